/** `coderunner db credentials <deployment>`: the connection details of a deployment's own database. */
import type { Command } from 'commander';
import { handler } from '../context';
import { resolveDeployment } from '../resolve';
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
    .description("a deployment's own database (deployed with --database postgres)");
  examples(db, ['coderunner db credentials 3f0c2a1b']);

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
}
