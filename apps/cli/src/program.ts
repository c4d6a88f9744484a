/**
 * The command tree. Each group of commands lives in its own module under commands/ and registers
 * itself on the program; a new group is one more `registerXCommands(program)` line here.
 */
import { Command } from 'commander';
import { registerAuthCommands } from './commands/auth';
import { registerDbCommands } from './commands/db';
import { registerDeployCommand } from './commands/deploy';
import {
  registerDeploymentCommands,
  registerOpenCommand,
  registerReleaseCommands,
} from './commands/deployments';
import { registerEnvCommands } from './commands/env';
import { examples } from './commands/help';
import { registerLogsCommand } from './commands/logs';
import { registerProjectCommands } from './commands/projects';
import { DEFAULT_API_URL } from './context';
import { VERSION } from './version';

const MORE_HELP = `
Environment:
  CODERUNNER_API_URL     server address, used when --api-url is not given
  CODERUNNER_TOKEN       token to use instead of the saved one (for CI)
  CODERUNNER_CONFIG_DIR  folder of config.json (default: $XDG_CONFIG_HOME/coderunner or ~/.config/coderunner)
  CODERUNNER_PROJECT     project to deploy into when deploy has no --project
  NO_COLOR               set to turn colours off

Exit codes:
  0    success
  1    the operation failed (the server's reason is printed; a deployment that FAILED)
  2    usage error: unknown command or option, missing argument
  3    not logged in, or the session expired: run coderunner login
  4    the server cannot be reached
  130  interrupted: Ctrl-C at a prompt, or while deploy follows the build (logs --follow ends with 0)
`;

export function createProgram(): Command {
  const program = new Command('coderunner')
    .description(
      'Deploy code into sandboxes and get a URL for it: accounts, projects and deployments on a CodeRunner server.',
    )
    .version(VERSION, '-V, --version', 'print the version')
    .option(
      '--api-url <url>',
      `server address (default: $CODERUNNER_API_URL, else the one you logged in to, else ${DEFAULT_API_URL})`,
    )
    .option('--json', 'print the result as one JSON document on stdout')
    .option('--debug', 'print stack traces with errors')
    .helpCommand(false)
    // Inherited by every command added below: help shows the global options, errors become
    // CommanderErrors that main() maps to exit code 2, and bad usage says where help is.
    .configureHelp({ showGlobalOptions: true })
    .showHelpAfterError('(add --help for usage)')
    .exitOverride();

  registerAuthCommands(program);
  registerProjectCommands(program);
  registerDeployCommand(program);
  registerDeploymentCommands(program);
  registerLogsCommand(program);
  registerDbCommands(program);
  registerReleaseCommands(program);
  registerEnvCommands(program);
  registerOpenCommand(program);

  examples(program, [
    'coderunner register',
    'coderunner projects create web',
    'coderunner deploy ./my-app --project web',
    'coderunner logs 3f0c2a1b --follow',
  ]);
  program.addHelpText('after', MORE_HELP);
  return program;
}
