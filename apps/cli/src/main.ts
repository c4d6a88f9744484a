/**
 * Entry point of the `coderunner` command: parse, run, and turn the outcome into an exit code.
 * Errors are one line on stderr ("error: ..."); --debug adds the stack traces.
 */
import { CommanderError } from 'commander';
import { CliError, ExitCode, InterruptedError, toCliError } from './errors';
import { printable } from './output';
import { createProgram } from './program';

function describe(err: unknown): string {
  const lines: string[] = [];
  for (let e: unknown = err, depth = 0; e && depth < 8; depth++) {
    lines.push(
      depth ? `caused by: ${e instanceof Error ? e.stack : String(e)}` : String((e as Error).stack ?? e),
    );
    e = e instanceof Error ? e.cause : undefined;
  }
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const program = createProgram();
  try {
    await program.parseAsync(argv);
    return ExitCode.ok;
  } catch (err) {
    // commander has printed its own message (or the help / version) already.
    if (err instanceof CommanderError) return err.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    const debug = program.opts().debug === true || argv.slice(2).includes('--debug');
    const cliError =
      err instanceof CliError ? err : toCliError(err, { apiUrl: '(unknown server)', tokenSource: null });
    if (!(cliError instanceof InterruptedError)) {
      process.stderr.write(`error: ${printable(cliError.message)}\n`);
    }
    if (debug) process.stderr.write(`${describe(cliError)}\n`);
    return cliError.exitCode;
  }
}

// A reader that goes away early (`coderunner projects list | head -1`) is not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

process.exitCode = await main(process.argv);
