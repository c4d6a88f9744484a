/**
 * `coderunner logs <deployment>`: the history, and with --follow the new lines until Ctrl-C or until
 * the deployment writes no more; `--project <p> --follow` follows whichever deployment the project's
 * URL serves, from release to release.
 */
import { setTimeout } from 'node:timers/promises';
import type { CodeRunnerClient } from '@coderunner/api/client';
import { type Command, InvalidArgumentError } from 'commander';
import { type Context, handler } from '../context';
import { CliError } from '../errors';
import { handleInterrupt, streamLogs } from '../follow';
import { formatLogLine } from '../progress';
import { resolveDeployment, resolveProject } from '../resolve';
import { type LogEnd, logLineJson, type Project } from '../views';
import { examples } from './help';

const TAIL_MAX = 10_000; // the API's largest tail
/** How often a project follower asks which deployment the project serves, while none does. */
const PROJECT_POLL_MS = 2_000;

function tailCount(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1 || n > TAIL_MAX) {
    throw new InvalidArgumentError(`must be a whole number from 1 to ${TAIL_MAX}`);
  }
  return n;
}

const short = (id: string) => id.slice(0, 8);

/** The line that says why a follow ended. */
export function endText(id: string, end: LogEnd): string {
  switch (end.status) {
    case 'STOPPED':
      return end.replacedBy
        ? `deployment ${short(id)} was replaced by ${short(end.replacedBy)} and stopped: its log ends here`
        : `deployment ${short(id)} stopped: its log ends here`;
    case 'FAILED':
      return `deployment ${short(id)} failed: its log ends here`;
    default:
      return `deployment ${short(id)} was destroyed: its log ends here`;
  }
}

interface Follow {
  follow: boolean;
  tail?: number | undefined;
  signal: AbortSignal;
}

/** One deployment's log; resolves with how its follow ended (undefined: not following, or Ctrl-C). */
async function printLog(
  ctx: Context,
  client: CodeRunnerClient,
  id: string,
  opts: Follow & { afterId?: number | null },
): Promise<{ end: LogEnd | undefined; last: number | null }> {
  let end: LogEnd | undefined;
  const style = (text: string) => ctx.out.style(text, 'yellow', true);
  const last = await streamLogs(client, {
    id,
    follow: opts.follow,
    tail: opts.tail,
    afterId: opts.afterId,
    signal: opts.signal,
    apiUrl: ctx.apiUrl,
    onConnection: (state) =>
      ctx.out.info(
        style(
          state === 'lost'
            ? 'connection to the server lost; reconnecting…'
            : 'reconnected; resuming after the last line',
        ),
      ),
    onMissed: (count) =>
      ctx.out.info(
        style(
          `… ${count} line${count === 1 ? '' : 's'} skipped (no longer kept by the server, or this terminal read too slowly)`,
        ),
      ),
    onLine: (line) => {
      if (ctx.json) ctx.out.printLine(JSON.stringify(logLineJson(line)));
      else ctx.out.printLine(formatLogLine(line, ctx.out, { time: true, forStderr: false }));
    },
    onEnd: (e) => {
      end = e;
      ctx.out.info(style(endText(id, e)));
    },
  });
  return { end, last };
}

/** Waits `ms`, or less when Ctrl-C aborts the wait. */
const sleep = (ms: number, signal: AbortSignal) => setTimeout(ms, undefined, { signal }).catch(() => {});

/**
 * The deployment the project's URL serves, waiting (and saying so once) while none does, or while
 * it is still `ended` and not running again; null on Ctrl-C.
 */
async function servedDeployment(
  ctx: Context,
  client: CodeRunnerClient,
  project: Project,
  ended: string | null,
  signal: AbortSignal,
): Promise<string | null> {
  let told = false;
  while (!signal.aborted) {
    const { currentDeploymentId: id } = await client.projects.get.query({ id: project.id });
    if (id && id !== ended) return id;
    if (id && ended) {
      // The same deployment serves again (started again): its new lines.
      const d = await client.deployments.get.query({ id });
      if (d.status === 'RUNNING' && d.current) return id;
    }
    if (!told) {
      ctx.out.info(ctx.out.style(`waiting for a deployment of ${project.name} to run…`, 'yellow', true));
      told = true;
    }
    await sleep(PROJECT_POLL_MS, signal);
  }
  return null;
}

/** Follows whatever the project's URL serves: each deployment until it ends, then the next one. */
async function followProject(ctx: Context, client: CodeRunnerClient, project: Project, opts: Follow) {
  const lastOf = new Map<string, number | null>();
  let next: string | null = null;
  let ended: string | null = null;
  let first = true;
  while (!opts.signal.aborted) {
    const id: string | null = next ?? (await servedDeployment(ctx, client, project, ended, opts.signal));
    if (!id || opts.signal.aborted) return;
    ctx.out.info(
      ctx.out.style(`following deployment ${short(id)} (the project's URL serves it)`, 'dim', true),
    );
    const { end, last } = await printLog(ctx, client, id, {
      ...opts,
      // Only the first deployment's history is trimmed; a later one is followed from its start.
      tail: first ? opts.tail : undefined,
      afterId: lastOf.get(id) ?? (first ? null : 0),
    });
    first = false;
    lastOf.set(id, last);
    if (!end) return;
    ended = id;
    next = end.replacedBy ?? null;
  }
}

export function registerLogsCommand(program: Command): void {
  const logs = program
    .command('logs')
    .description(
      "print a deployment's log (build output, app output, what CodeRunner did); with --follow, keep printing new lines",
    )
    .argument('[deployment]', 'deployment id, or the start of one')
    .option('-f, --follow', 'keep printing new lines as they come, until Ctrl-C or the deployment ends')
    .option(
      '-p, --project <project>',
      "instead of a deployment: the one the project's URL serves; with --follow, from release to release",
    )
    .option('-n, --tail <n>', `start with only the last n lines (at most ${TAIL_MAX})`, tailCount)
    .addHelpText(
      'after',
      `
Without --follow it prints the history the server keeps (the last 1000 lines unless --tail says
otherwise) and ends. With --follow it then waits for new lines until Ctrl-C (exit 0), or until the
deployment writes no more: when it stops, fails, is replaced by a newer release or is destroyed, a
last line on stderr says which, and the command ends (exit 0). When the connection to the server is
lost (a server restart) it reconnects by itself and resumes after the last line it printed: no line
is lost or printed twice. If the server no longer keeps some lines (its log of a deployment is
bounded) or this terminal reads too slowly to keep up, it says on stderr how many lines were skipped
and goes on.

With --project and --follow it follows the deployment the project's URL serves and, when that one
ends, the one that replaced it (or waits for the next one to run): one command for a project's log
across releases, restarts and rollbacks.

With --json, one JSON object per line (NDJSON): {"id","time","source","stream","text"}; "source" is
system, build or app, "stream" stdout, stderr or info.`,
    );
  // A deployment or a project, one of the two: said as commander says a missing argument (exit 2).
  logs.hook('preAction', (command) => {
    if ((command.args[0] === undefined) === (command.opts().project === undefined))
      command.error('error: name a deployment, or a project with --project (not both)', { exitCode: 2 });
  });
  examples(logs, [
    'coderunner logs 3f0c2a1b',
    'coderunner logs 3f0c --follow',
    'coderunner logs --project shop --follow',
    'coderunner logs 3f0c --tail 50 --json | jq -r .text',
  ]).action(
    handler<{ follow?: boolean; tail?: number; project?: string }>(async (ctx, [ref], opts) => {
      const client = ctx.client();
      const follow = opts.follow === true;
      const abort = new AbortController();
      // Ctrl-C ends a follow: the normal way out, so exit 0.
      const removeInterrupt = follow ? handleInterrupt(() => abort.abort()) : () => {};
      try {
        const options = { follow, tail: opts.tail, signal: abort.signal };
        if (ref !== undefined) {
          const deployment = await resolveDeployment(client, ref);
          await printLog(ctx, client, deployment.id, options);
          return;
        }
        const project = await resolveProject(client, opts.project!);
        if (follow) {
          await followProject(ctx, client, project, options);
          return;
        }
        const { currentDeploymentId: id } = await client.projects.get.query({ id: project.id });
        if (!id) throw new CliError(`no deployment of ${project.name} is running; name a deployment instead`);
        await printLog(ctx, client, id, options);
      } finally {
        removeInterrupt();
      }
    }),
  );
}
