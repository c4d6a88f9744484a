/**
 * `coderunner deploy [dir]`: pack the folder, upload it, then follow the deployment (status and build
 * log) until it runs (the URL is printed last, alone on its line of stdout) or fails (exit 1 with
 * the reason).
 */
import fs from 'node:fs';
import path from 'node:path';
import { type CodeRunnerClient, RUNTIME_TYPES, type RuntimeType } from '@coderunner/api/client';
import { packFolder } from '@coderunner/api/pack';
import { type Command, Option } from 'commander';
import { type Context, handler } from '../context';
import { CliError, ExitCode, InterruptedError, UsageError } from '../errors';
import { handleInterrupt, streamLogs, watchDeployment } from '../follow';
import { printable } from '../output';
import { formatLogLine, StatusLine } from '../progress';
import { resolveProject } from '../resolve';
import { type Deployment, deploymentJson, type LogLine } from '../views';
import { parseAssignments } from './env';
import { examples } from './help';

interface DeployOptions {
  project?: string;
  database?: 'postgres';
  runtime?: RuntimeType;
  detach?: boolean;
  env?: string[];
  /** commander's negation of --no-cache: false when given. */
  cache?: boolean;
}

/** After RUNNING or FAILED, how long to wait for the log line that tells about it. */
const LOG_GRACE_MS = 2_000;

const statusText = (d: Deployment) => {
  switch (d.status) {
    case 'PENDING':
      return 'queued: waiting for a worker';
    case 'PROVISIONING':
      return 'provisioning a sandbox';
    case 'BUILDING':
      return 'installing, building and starting';
    default:
      return d.status.toLowerCase();
  }
};

/** Follows a fresh deployment until RUNNING or FAILED; returns the final deployment and its log. */
async function follow(
  ctx: Context,
  client: CodeRunnerClient,
  created: Deployment,
): Promise<{ deployment: Deployment; lines: LogLine[] }> {
  const status = new StatusLine(ctx.out, ctx.json);
  const short = created.id.slice(0, 8);
  const lines: LogLine[] = [];
  let deployment = created;
  let lastLineId: number | null = null;

  const logsAbort = new AbortController();
  const watchAbort = new AbortController();
  let interrupted = false;
  let settle: (() => void) | undefined;
  const terminal = new Promise<void>((resolve) => {
    settle = resolve;
  });
  // Lines that tell that the deployment reached its end (logged around the status change).
  let wantLine: ((l: LogLine) => boolean) | undefined;
  let lineSeen: (() => void) | undefined;

  const onConnection = (state: 'lost' | 'back') => {
    if (state === 'lost')
      status.line(ctx.out.style('connection to the server lost; reconnecting…', 'yellow', true));
    else status.line(ctx.out.style('reconnected', 'dim', true));
  };

  const removeInterrupt = handleInterrupt(() => {
    interrupted = true;
    settle?.();
  });

  const logs = streamLogs(client, {
    id: created.id,
    follow: true,
    signal: logsAbort.signal,
    apiUrl: ctx.apiUrl,
    onConnection,
    onMissed: (count) => status.line(ctx.out.style(`… ${count} log lines skipped`, 'yellow', true)),
    onLine: (line) => {
      lines.push(line);
      lastLineId = line.id;
      status.line(formatLogLine(line, ctx.out, { time: false, forStderr: true }));
      if (wantLine?.(line)) lineSeen?.();
    },
  });
  const watch = watchDeployment(client, {
    id: created.id,
    signal: watchAbort.signal,
    apiUrl: ctx.apiUrl,
    onConnection,
    onStatus: (d) => {
      deployment = d;
      if (['RUNNING', 'FAILED', 'STOPPED', 'DESTROYED'].includes(d.status)) settle?.();
      else status.set(`${short} ${statusText(d)}`, `status: ${d.status}`);
    },
  });
  // Whichever stream fails first (server gone at the start, session expired) ends the command.
  const failure = Promise.race([logs, watch]).then(
    () => new Promise<never>(() => {}),
    (err: unknown) => err,
  );
  try {
    const err = await Promise.race([terminal.then(() => undefined), failure]);
    watchAbort.abort();
    if (err !== undefined) throw err;
    if (interrupted) {
      logsAbort.abort();
      status.done();
      ctx.out.info(
        `interrupted: deployment ${created.id} goes on without you; follow it with \`coderunner logs ${created.id.slice(0, 8)} --follow\``,
      );
      throw new InterruptedError();
    }
    // The log tells why it failed (a `failed` event, written around the status change) or where it
    // runs (a `running` event, just after it): wait a moment for that line, then read what is missing.
    const wantedType = deployment.status === 'RUNNING' ? 'running' : 'failed';
    const wanted = (l: LogLine) => l.event?.type === wantedType;
    if (!lines.some(wanted)) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, LOG_GRACE_MS);
        wantLine = wanted;
        lineSeen = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    logsAbort.abort();
    await logs.catch(() => {});
    if (!lines.some(wanted)) {
      await streamLogs(client, {
        id: created.id,
        follow: false,
        afterId: lastLineId,
        apiUrl: ctx.apiUrl,
        onLine: (line) => {
          lines.push(line);
          status.line(formatLogLine(line, ctx.out, { time: false, forStderr: true }));
        },
      }).catch(() => {});
    }
    return { deployment, lines };
  } finally {
    removeInterrupt();
    watchAbort.abort();
    logsAbort.abort();
    status.done();
  }
}

export function registerDeployCommand(program: Command): void {
  const deploy = program
    .command('deploy')
    .description(
      'deploy a folder: pack it (respecting .gitignore and .coderunnerignore), upload it, and follow the build until it runs',
    )
    .argument('[dir]', 'the folder to deploy', '.')
    .option(
      '-p, --project <project>',
      'the project (name or id) to deploy into (default: $CODERUNNER_PROJECT)',
    )
    .addOption(
      new Option(
        '--runtime <runtime>',
        'how to build and start it (default: detected from the files)',
      ).choices(RUNTIME_TYPES),
    )
    .addOption(new Option('--database <kind>', 'give the deployment its own database').choices(['postgres']))
    .option('-d, --detach', 'return right after the upload, printing the deployment id')
    .option(
      '--no-cache',
      "build without the project's build cache (it is dropped; this build fills it again)",
    )
    .option(
      '-e, --env <NAME=value>',
      "a variable for this deployment only, over the project's (`coderunner env`); repeatable",
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .addHelpText(
      'after',
      `
Left out of the upload: node_modules and .git always; .venv and __pycache__ unless an ignore file
says otherwise (!.venv/); whatever .gitignore files (at the top and in subfolders) and a
.coderunnerignore (same syntax, read after .gitignore) say, whether or not the folder is a git
repository.

Output: the build log and the status on stderr; on stdout only the deployment's URL, once the app
runs (its last line); the project URL, which now serves it, on stderr. With --detach, the deployment
id instead. With --json, one JSON document on stdout: { "deployment": {...}, "url": "http://..." |
null, "projectUrl": "http://..." | null, "upload": { "files": n, "bytes": n } }, plus "reason" when
it failed; nothing on stderr but errors.

Deploying to a project whose app runs replaces it without downtime: the new deployment starts beside
the old one, the project URL switches once it answers, and the old one stops after a drain
(CODERUNNER_REDEPLOY_DRAIN_S on the server). If the new one fails, the old one keeps serving.

Exit codes: 0 running (or queued, with --detach); 1 the deployment failed (the reason is printed);
130 Ctrl-C (the deployment goes on on the server).`,
    );
  examples(deploy, [
    'coderunner deploy --project web',
    'coderunner deploy ./api --project api --database postgres',
    'coderunner deploy --project web --env LOG_LEVEL=debug --env FEATURE_X=1',
    'URL=$(coderunner deploy --project web) && curl "$URL"',
    'coderunner deploy --project web --detach --json | jq -r .deployment.id',
  ]).action(
    handler<DeployOptions>(async (ctx, [dirArg], opts) => {
      const dir = path.resolve(dirArg ?? '.');
      let stat: fs.Stats;
      try {
        stat = fs.statSync(dir);
      } catch {
        throw new UsageError(`no such folder: ${dirArg}`);
      }
      if (!stat.isDirectory()) throw new UsageError(`not a folder: ${dirArg}`);
      const envOverrides = parseAssignments(opts.env ?? []);
      const projectRef = opts.project ?? ctx.env.CODERUNNER_PROJECT?.trim();
      if (!projectRef) {
        throw new UsageError(
          'which project? pass --project <name or id> (or set CODERUNNER_PROJECT); `coderunner projects list` shows yours',
        );
      }
      const client = ctx.client();
      const project = await resolveProject(client, projectRef);
      // Servers from before system.info existed simply do not say: no warning then.
      const system = await client.system.info.query().catch(() => null);
      if (system?.isolation === 'none')
        ctx.out.warn(
          'this server runs deployed apps without isolation (CODERUNNER_ISOLATION=none): other apps on it can read and change yours',
        );

      let packed: Awaited<ReturnType<typeof packFolder>>;
      try {
        packed = await packFolder(dir);
      } catch (err) {
        throw new CliError(`cannot pack ${dir}: ${(err as Error).message}`, ExitCode.failed, { cause: err });
      }
      for (const skipped of packed.skipped)
        ctx.out.warn(`not uploaded (not a file, folder or link): ${skipped}`);
      if (!ctx.json) {
        ctx.out.info(
          `Uploading ${formatSize(packed.archive.length)} (${packed.files} file${packed.files === 1 ? '' : 's'}, ${formatSize(packed.bytes)} unpacked) to project ${printable(project.name)}…`,
        );
      }
      const form = new FormData();
      form.set('projectId', project.id);
      if (opts.runtime) form.set('runtime', opts.runtime);
      if (opts.database) form.set('database', opts.database);
      if (opts.cache === false) form.set('noCache', 'true');
      if (Object.keys(envOverrides).length) form.set('env', JSON.stringify(envOverrides));
      form.set('source', new Blob([new Uint8Array(packed.archive)]), 'source.tar.gz');
      const created = await client.deployments.create.mutate(form);
      const upload = { files: packed.files, bytes: packed.archive.length };
      await followRelease(ctx, client, created, { detach: opts.detach, upload });
    }),
  );
}

/**
 * After a deployment was queued (deploy, rollback, redeploy): with `detach`, print its id; else follow
 * it to RUNNING (its URL on stdout, the project URL it now serves on stderr) or to FAILED (exit 1 with
 * the reason, and which deployment the project URL still serves).
 */
export async function followRelease(
  ctx: Context,
  client: CodeRunnerClient,
  created: Deployment,
  opts: { detach?: boolean | undefined; upload?: { files: number; bytes: number } },
): Promise<void> {
  const extra = opts.upload ? { upload: opts.upload } : {};
  if (opts.detach) {
    if (ctx.json) {
      ctx.out.printJson({ deployment: deploymentJson(created), url: null, projectUrl: null, ...extra });
      return;
    }
    ctx.out.info(
      `Deployment ${created.id} queued; follow it with \`coderunner logs ${created.id.slice(0, 8)} --follow\``,
    );
    ctx.out.print(created.id);
    return;
  }
  if (!ctx.json) ctx.out.info(`Deployment ${created.id} queued`);

  const { deployment, lines } = await follow(ctx, client, created);
  const project = await client.projects.get.query({ id: deployment.projectId }).catch(() => null);
  const projectUrl = project?.url ?? null;
  if (deployment.status === 'RUNNING' && deployment.publicUrl) {
    if (ctx.json) {
      ctx.out.printJson({
        deployment: deploymentJson(deployment),
        url: deployment.publicUrl,
        projectUrl,
        ...extra,
      });
    } else {
      ctx.out.info(ctx.out.style(`Deployment ${deployment.id} is running`, 'green', true));
      if (projectUrl)
        ctx.out.info(
          project?.currentDeploymentId === deployment.id
            ? `Project ${printable(project.name)} serves it at ${projectUrl}`
            : `Project ${printable(project?.name ?? '')} serves a newer deployment at ${projectUrl}`,
        );
      ctx.out.print(deployment.publicUrl);
    }
    return;
  }
  const failed = lines.findLast((l) => l.event?.type === 'failed')?.event;
  const reason =
    deployment.status === 'FAILED'
      ? ((failed?.type === 'failed' ? failed.reason : deployment.failureReason) ?? 'no reason in the log')
      : `it was ${deployment.status.toLowerCase()} before it ran`;
  if (ctx.json) {
    ctx.out.printJson({ deployment: deploymentJson(deployment), url: null, projectUrl, ...extra, reason });
  }
  const still =
    project?.currentDeploymentId && project.url
      ? `\nthe project URL still serves the previous deployment ${project.currentDeploymentId}: ${project.url}`
      : '';
  // The reason's first line, then the output lines that explain it, indented under it.
  throw new CliError(
    `deployment ${deployment.id} ${deployment.status}: ${printable(reason).replace(/\n/g, '\n  ')}${still}\n(the whole log: coderunner logs ${deployment.id.slice(0, 8)})`,
  );
}

/** 1536 → "1.5 KiB". */
function formatSize(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
