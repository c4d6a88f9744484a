/**
 * `coderunner db credentials <deployment>`: the connection details of the project's database a
 * deployment uses; `coderunner db reset <project>`: a new, empty database for the project;
 * `db backup`, `db backups`, `db restore`, `db download`: its backups.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { backupDownloadPath } from '@coderunner/api/client';
import type { Command } from 'commander';
import { type Context, handler } from '../context';
import { CliError, ExitCode, NOT_LOGGED_IN } from '../errors';
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
  examples(db, [
    'coderunner db credentials 3f0c2a1b',
    'coderunner db backup web',
    'coderunner db backups web',
    'coderunner db restore web 20261208T010203Z-manual',
    'coderunner db download web 20261208T010203Z-manual -o web.tar.gz',
    'coderunner db reset web',
  ]);

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
Every row in the database is dropped. A project's own database is backed up first (the command
prints the backup; \`coderunner db restore <project> <backup>\` brings the rows back); one made on the
shared cluster of an older release has no backups. The credentials (DATABASE_URL) stay the same. Deploys, redeploys and rollbacks never do this: they all
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
        question: `Drop every table and row in the database of project ${printable(project.name)} (${project.id})? A backup is taken first (a database on the older shared cluster has none)`,
        declined: 'not reset',
      });
      const reset = await client.projects.resetDatabase.mutate({ id: project.id });
      if (ctx.json) {
        ctx.out.printJson(reset);
        return;
      }
      ctx.out.print(`Reset the database of project ${printable(project.name)}: it is empty now`);
      if (reset.backupId)
        ctx.out.info(
          `Its rows before the reset are in backup ${reset.backupId}: \`coderunner db restore ${printable(project.name)} ${reset.backupId}\` brings them back`,
        );
      else ctx.out.info('It had no backups (a database on the older shared cluster): its rows are gone');
      if (reset.restartedDeploymentId)
        ctx.out.info(
          `Deployment ${reset.restartedDeploymentId} is starting again on it; follow it with \`coderunner logs ${reset.restartedDeploymentId.slice(0, 8)} --follow\``,
        );
    }),
  );

  registerBackupCommands(db);
}

function megabytes(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

function registerBackupCommands(db: Command): void {
  examples(
    db
      .command('backup')
      .description("take a backup of the project's database now (while its apps keep running)")
      .argument('<project>', 'project name or id')
      .addHelpText(
        'after',
        `
The oldest backups beyond the owner's plan are dropped (free 3, personal 7, team 30 by default).
A backup holds the whole database: every table, role and sequence.`,
      ),
    ['coderunner db backup web', 'coderunner db backup web --json'],
  ).action(
    handler(async (ctx, [ref]) => {
      const client = ctx.client();
      const project = await resolveProject(client, ref!);
      const backup = await client.projects.backupDatabase.mutate({ id: project.id });
      if (ctx.json) {
        ctx.out.printJson(backup);
        return;
      }
      ctx.out.print(
        `Backed up the database of project ${printable(project.name)}: ${backup.id} (${megabytes(backup.sizeBytes)})`,
      );
    }),
  );

  examples(
    db
      .command('backups')
      .description("list the backups of the project's database, newest first")
      .argument('<project>', 'project name or id'),
    ['coderunner db backups web', 'coderunner db backups web --json | jq -r ".items[0].id"'],
  ).action(
    handler(async (ctx, [ref]) => {
      const client = ctx.client();
      const project = await resolveProject(client, ref!);
      const list = await client.projects.databaseBackups.query({ id: project.id });
      if (ctx.json) {
        ctx.out.printJson(list);
        return;
      }
      if (!list.items.length) {
        ctx.out.info(
          `Project ${printable(project.name)} has no database backups yet; take one with \`coderunner db backup ${printable(project.name)}\``,
        );
        return;
      }
      ctx.out.table(
        ['ID', 'CREATED', 'REASON', 'SIZE', 'POSTGRESQL'],
        list.items.map((b) => [
          b.id,
          b.createdAt.toISOString(),
          b.reason,
          megabytes(b.sizeBytes),
          b.postgresVersion,
        ]),
      );
    }),
  );

  examples(
    db
      .command('restore')
      .description(
        "put the project's database back as it was at a backup (asks first unless --yes); its current state is backed up first",
      )
      .argument('<project>', 'project name or id')
      .argument('<backup>', 'backup id, as `coderunner db backups <project>` lists them')
      .option('-y, --yes', 'do not ask for confirmation (needed when there is no terminal)')
      .addHelpText(
        'after',
        `
Every change made since the backup is undone. The database restarts: the apps using it lose their
connections for a few seconds. The state it had before the restore is kept as a backup of its own
(reason "before-restore"), so a restore can itself be undone.`,
      ),
    [
      'coderunner db restore web 20261208T010203Z-manual',
      'coderunner db restore web 20261208T010203Z-manual --yes',
    ],
  ).action(
    handler<{ yes?: boolean }>(async (ctx, [ref, backupId], opts) => {
      const client = ctx.client();
      const project = await resolveProject(client, ref!);
      await confirmOrRefuse({
        yes: opts.yes,
        refused: `not restoring the database of project "${printable(project.name)}"`,
        question: `Put the database of project ${printable(project.name)} back as it was at backup ${printable(backupId!)}? Changes made since then are undone (the current state is backed up first)`,
        declined: 'not restored',
      });
      const result = await client.projects.restoreDatabase.mutate({ id: project.id, backupId: backupId! });
      if (ctx.json) {
        ctx.out.printJson(result);
        return;
      }
      ctx.out.print(
        `Restored the database of project ${printable(project.name)} to backup ${result.restored.id} (${result.restored.createdAt.toISOString()})`,
      );
      ctx.out.info(
        `Its state before the restore is backup ${result.safetyBackup.id}: \`coderunner db restore ${printable(project.name)} ${result.safetyBackup.id}\` undoes this restore`,
      );
    }),
  );

  examples(
    db
      .command('download')
      .description("save a backup of the project's database as a .tar.gz that PostgreSQL 17 starts as it is")
      .argument('<project>', 'project name or id')
      .argument('<backup>', 'backup id, as `coderunner db backups <project>` lists them')
      .option('-o, --output <file>', "where to write it (default: the server's file name, in this folder)")
      .addHelpText(
        'after',
        `
The archive holds the whole database, roles and password hashes included: keep it as you would the
database's password (it is written readable by you only). To start it: see "Backups" in the README.`,
      ),
    [
      'coderunner db download web 20261208T010203Z-manual',
      'coderunner db download web 20261208T010203Z-manual -o web.tar.gz',
    ],
  ).action(
    handler<{ output?: string }>(async (ctx, [ref, backupId], opts) => {
      const client = ctx.client();
      const project = await resolveProject(client, ref!);
      const saved = await downloadBackup(ctx, project.id, backupId!, opts.output);
      if (ctx.json) {
        ctx.out.printJson(saved);
        return;
      }
      ctx.out.print(
        `Saved backup ${backupId} of project ${printable(project.name)} to ${saved.file} (${megabytes(saved.sizeBytes)})`,
      );
    }),
  );
}

/** Streams the archive to `output` (a temp name, renamed when complete), 0600. */
async function downloadBackup(
  ctx: Context,
  projectId: string,
  backupId: string,
  output: string | undefined,
): Promise<{ file: string; sizeBytes: number; sha256: string }> {
  const token = ctx.token;
  if (!token) throw new CliError(NOT_LOGGED_IN, ExitCode.notLoggedIn);
  let res: Response;
  try {
    res = await fetch(`${ctx.apiUrl}${backupDownloadPath(projectId, backupId)}`, {
      headers: { authorization: `Bearer ${token.value}` },
    });
  } catch (err) {
    throw new CliError(
      `cannot reach the server at ${ctx.apiUrl}: ${(err as Error).message}`,
      ExitCode.unreachable,
    );
  }
  if (!res.ok || !res.body) {
    const body = (await res.json().catch(() => null)) as {
      error?: { code?: string; message?: string };
    } | null;
    const message = body?.error?.message ?? `the server answered ${res.status}`;
    throw new CliError(message, res.status === 401 ? ExitCode.notLoggedIn : ExitCode.failed);
  }
  const suggested = /filename="([^"/\\]+)"/.exec(res.headers.get('content-disposition') ?? '')?.[1];
  const file = path.resolve(output ?? suggested ?? `${backupId}.tar.gz`);
  const tmp = `${file}.part-${process.pid}`;
  try {
    await pipeline(
      Readable.fromWeb(res.body as WebReadableStream),
      fs.createWriteStream(tmp, { mode: 0o600 }),
    );
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw new CliError(`could not save the backup to ${file}: ${(err as Error).message}`);
  }
  return { file, sizeBytes: fs.statSync(file).size, sha256: res.headers.get('x-backup-sha256') ?? '' };
}
