/** `coderunner logs <deployment>`: the history, and with --follow the new lines until Ctrl-C. */
import { type Command, InvalidArgumentError } from 'commander';
import { handler } from '../context';
import { handleInterrupt, streamLogs } from '../follow';
import { formatLogLine } from '../progress';
import { resolveDeployment } from '../resolve';
import { logLineJson } from '../views';
import { examples } from './help';

const TAIL_MAX = 10_000; // the API's largest tail

function tailCount(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1 || n > TAIL_MAX) {
    throw new InvalidArgumentError(`must be a whole number from 1 to ${TAIL_MAX}`);
  }
  return n;
}

export function registerLogsCommand(program: Command): void {
  const logs = program
    .command('logs')
    .description(
      "print a deployment's log (build output, app output, what CodeRunner did); with --follow, keep printing new lines",
    )
    .argument('<deployment>', 'deployment id, or the start of one')
    .option('-f, --follow', 'keep printing new lines as they come, until Ctrl-C')
    .option('-n, --tail <n>', `start with only the last n lines (at most ${TAIL_MAX})`, tailCount)
    .addHelpText(
      'after',
      `
Without --follow it prints the history the server keeps (the last 1000 lines unless --tail says
otherwise) and ends. With --follow it then waits for new lines until Ctrl-C (exit 0); when the
connection to the server is lost (a server restart) it reconnects by itself and resumes after the
last line it printed: no line is lost or printed twice. If the server no longer keeps some lines
(its log of a deployment is bounded) or this terminal reads too slowly to keep up, it says on stderr
how many lines were skipped and goes on.

With --json, one JSON object per line (NDJSON): {"id","time","source","stream","text"}; "source" is
system, build or app, "stream" stdout, stderr or info.`,
    );
  examples(logs, [
    'coderunner logs 3f0c2a1b',
    'coderunner logs 3f0c --follow',
    'coderunner logs 3f0c --tail 50 --json | jq -r .text',
  ]).action(
    handler<{ follow?: boolean; tail?: number }>(async (ctx, [ref], opts) => {
      const client = ctx.client();
      const deployment = await resolveDeployment(client, ref!);
      const follow = opts.follow === true;
      const abort = new AbortController();
      // Ctrl-C ends a follow: the normal way out, so exit 0.
      const removeInterrupt = follow ? handleInterrupt(() => abort.abort()) : () => {};
      try {
        await streamLogs(client, {
          id: deployment.id,
          follow,
          tail: opts.tail,
          signal: abort.signal,
          apiUrl: ctx.apiUrl,
          onConnection: (state) =>
            ctx.out.info(
              ctx.out.style(
                state === 'lost'
                  ? 'connection to the server lost; reconnecting…'
                  : 'reconnected; resuming after the last line',
                'yellow',
                true,
              ),
            ),
          onMissed: (count) =>
            ctx.out.info(
              ctx.out.style(
                `… ${count} line${count === 1 ? '' : 's'} skipped (no longer kept by the server, or this terminal read too slowly)`,
                'yellow',
                true,
              ),
            ),
          onLine: (line) => {
            if (ctx.json) ctx.out.printLine(JSON.stringify(logLineJson(line)));
            else ctx.out.printLine(formatLogLine(line, ctx.out, { time: true, forStderr: false }));
          },
        });
      } finally {
        removeInterrupt();
      }
    }),
  );
}
