/**
 * `coderunner db credentials <deployment>`: the connection details of the project's database a
 * deployment uses; `coderunner db reset <project>`: a new, empty database for the project.
 */
import type { Command } from 'commander';
import { handler } from '../context';
import { printable } from '../output';
import { confirmOrRefuse } from '../prompt';
import { resolveDeployment, resolveProject } from '../resolve';
import { databaseCredentialsJson } from '../views';
import { examples } from './help';

/** `value` as one shell word: as it is when that is safe, else in single quotes. */
export function shellWord(value: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(value)) return value;
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export function registerDbCommands(program: Command): void {
  const db = program
    .command('db')
    .description(
      "a project's database (deployed with --database postgres): every release of the project uses the same one",
    );
  examples(db, ['coderunner db credentials 3f0c2a1b', 'coderunner db reset web']);

  examples(
    db
      .command('credentials')
      .alias('creds')
      .description(
        'print DATABASE_URL=<url> for a deployment’s database (for `eval`), or every field with --fields',
      )
      .argument('<deployment>', 'deployment id, or the start of one')
      .option('--fields', 'print host, port, user, password, database and url, one per line')
      .option('--export', 'prefix the line with `export ` (for `eval` in a shell that should pass it on)'),
    [
      'coderunner db credentials 3f0c2a1b',
      'eval "$(coderunner db credentials 3f0c --export)" && psql "$DATABASE_URL"',
      'coderunner db credentials 3f0c --fields',
      'coderunner db credentials 3f0c --json | jq -r .password',
    ],
  ).action(
    handler<{ fields?: boolean; export?: boolean }>(async (ctx, [ref], opts) => {
      const client = ctx.client();
      const deployment = await resolveDeployment(client, ref!);
      const creds = databaseCredentialsJson(
        await client.deployments.databaseCredentials.query({ id: deployment.id }),
      );
      if (ctx.json) {
        ctx.out.printJson(creds);
        return;
      }
      if (opts.fields) {
        ctx.out.fields([
          ['host', creds.host],
          ['port', String(creds.port)],
          ['user', creds.user],
          ['password', creds.password],
          ['database', creds.database],
          ['url', creds.url],
        ]);
        return;
      }
      ctx.out.print(`${opts.export ? 'export ' : ''}DATABASE_URL=${shellWord(creds.url)}`);
    }),
  );

  examples(
    db
      .command('reset')
      .description(
        "drop the project's database and give it a new, empty one (asks first unless --yes); the app the project URL serves is started again on it",
      )
      .argument('<project>', 'project name or id')
      .option('-y, --yes', 'do not ask for confirmation (needed when there is no terminal)')
      .addHelpText(
        'after',
        `
Every row in the database is lost and cannot be brought back: there are no backups yet. The
credentials (DATABASE_URL) stay the same. Deploys, redeploys and rollbacks never do this: they all
keep the project's database as it is.`,
      ),
    ['coderunner db reset web', 'coderunner db reset web --yes --json'],
  ).action(
    handler<{ yes?: boolean }>(async (ctx, [ref], opts) => {
      const client = ctx.client();
      const project = await resolveProject(client, ref!);
      await confirmOrRefuse({
        yes: opts.yes,
        refused: `not resetting the database of project "${printable(project.name)}"`,
        question: `Drop every table and row in the database of project ${printable(project.name)} (${project.id})? There is no backup to restore`,
        declined: 'not reset',
      });
      const reset = await client.projects.resetDatabase.mutate({ id: project.id });
      if (ctx.json) {
        ctx.out.printJson(reset);
        return;
      }
      ctx.out.print(`Reset the database of project ${printable(project.name)}: it is empty now`);
      if (reset.restartedDeploymentId)
        ctx.out.info(
          `Deployment ${reset.restartedDeploymentId} is starting again on it; follow it with \`coderunner logs ${reset.restartedDeploymentId.slice(0, 8)} --follow\``,
        );
    }),
  );
}
