/** Deployment commands: deployments list | show | stop | start | destroy, and open. */
import { spawn } from 'node:child_process';
import type { CodeRunnerClient } from '@coderunner/api/client';
import { DEPLOYMENT_STATUSES } from '@coderunner/api/client';
import { type Command, InvalidArgumentError } from 'commander';
import { type Context, handler } from '../context';
import { CliError } from '../errors';
import { cell, printable, type Style, shortDate } from '../output';
import { confirmOrRefuse } from '../prompt';
import {
  allDeployments,
  allProjects,
  type DeploymentFilter,
  resolveDeployment,
  resolveProject,
  uniquePrefixLength,
} from '../resolve';
import { type Deployment, type DeploymentDetail, deploymentJson, type Usage, usageJson } from '../views';
import { followRelease } from './deploy';
import { examples } from './help';

const STATUS_STYLE: Partial<Record<string, Style>> = {
  RUNNING: 'green',
  FAILED: 'red',
  PENDING: 'yellow',
  PROVISIONING: 'yellow',
  BUILDING: 'yellow',
  STOPPED: 'dim',
  DESTROYED: 'dim',
};

const styledStatus = (ctx: Context, status: string) => {
  const style = STATUS_STYLE[status];
  return style ? ctx.out.style(status, style) : status;
};

/** Project names by id (for tables); a project deleted meanwhile shows as its id. */
async function projectNames(client: CodeRunnerClient): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  for await (const p of allProjects(client)) names.set(p.id, p.name);
  return names;
}

const DEPLOYMENT_ARG = 'deployment id, or the start of one (e.g. 3f0c2a1b)';

const mb = (bytes: number) => `${Math.round(bytes / 1024 / 1024)} MB`;

/** "memory 41 MB of 256 MB (peak 63 MB) · CPU 3% of 0.5": what the app uses now, and its limits. */
export function usageLine(u: Usage): string {
  const memory = `memory ${mb(u.memoryBytes)}${u.memoryLimitBytes === null ? '' : ` of ${mb(u.memoryLimitBytes)}`}${
    u.memoryPeakBytes === null ? '' : ` (peak ${mb(u.memoryPeakBytes)})`
  }`;
  const percent = u.cpu === null ? null : u.cpu > 0 && u.cpu < 0.005 ? '<1%' : `${Math.round(u.cpu * 100)}%`;
  const cpu =
    percent === null
      ? `CPU time ${(u.cpuSeconds ?? 0).toFixed(1)} s`
      : `CPU ${percent}${u.cpus === null ? '' : ` of ${u.cpus}`}`;
  const unlimited = u.memoryLimitBytes === null && u.cpus === null ? ' (no limits: unisolated)' : '';
  return `${memory} · ${cpu}${unlimited}`;
}

function showDeployment(ctx: Context, d: DeploymentDetail, projectName: string | undefined) {
  if (ctx.json) {
    ctx.out.printJson({ ...deploymentJson(d), usage: d.usage ? usageJson(d.usage) : null });
    return;
  }
  ctx.out.fields([
    ['id', d.id],
    ['project', projectName === undefined ? d.projectId : `${printable(projectName)} (${d.projectId})`],
    ['status', styledStatus(ctx, d.status)],
    // Why it failed: a line, then the output lines that explain it (indented under it).
    ...(d.failureReason
      ? [['reason', printable(d.failureReason).replace(/\n/g, `\n${' '.repeat(10)}`)] as [string, string]]
      : []),
    ['runtime', d.runtimeType ?? '-'],
    ['url', d.publicUrl ?? '-'],
    ['current', d.current ? "yes: its project's URL serves it" : 'no'],
    ['database', d.hasDatabase ? 'postgres (coderunner db credentials)' : '-'],
    ...(d.status === 'RUNNING'
      ? [['usage', d.usage ? usageLine(d.usage) : 'unknown here'] as [string, string]]
      : []),
    ['created', shortDate(d.createdAt)],
    ['updated', shortDate(d.updatedAt)],
  ]);
}

async function projectName(client: CodeRunnerClient, id: string): Promise<string | undefined> {
  try {
    return (await client.projects.get.query({ id })).name;
  } catch {
    return undefined;
  }
}

/** Opens `url` with the desktop's opener; a missing opener is a warning, never a failure. */
function openInBrowser(ctx: Context, url: string): Promise<void> {
  const opener = process.platform === 'darwin' ? 'open' : 'xdg-open';
  return new Promise((resolve) => {
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(opener, [url], { detached: true, stdio: 'ignore' });
    } catch (err) {
      ctx.out.warn(`could not open a browser (${opener}: ${(err as Error).message})`);
      return resolve();
    }
    child.once('error', (err: NodeJS.ErrnoException) => {
      ctx.out.warn(
        err.code === 'ENOENT'
          ? `could not open a browser: ${opener} is not installed`
          : `could not open a browser (${opener}: ${err.message})`,
      );
      resolve();
    });
    child.once('spawn', () => {
      child.unref();
      resolve();
    });
  });
}

export function registerDeploymentCommands(program: Command): void {
  const deployments = program
    .command('deployments')
    .description('list, show, stop, start and destroy your deployments');
  examples(deployments, ['coderunner deployments list', 'coderunner deployments show 3f0c2a1b']);

  examples(
    deployments
      .command('list')
      .alias('ls')
      .description('list your deployments, newest first (the ID column shows the shortest unique start)')
      .option('-p, --project <project>', 'only this project’s (name or id)')
      .option(
        '--status <status>',
        `only deployments in this status: ${DEPLOYMENT_STATUSES.map((s) => s.toLowerCase()).join(', ')}`,
        (v: string) => {
          const upper = v.trim().toUpperCase();
          if (!(DEPLOYMENT_STATUSES as readonly string[]).includes(upper)) {
            throw new InvalidArgumentError(
              `must be one of ${DEPLOYMENT_STATUSES.map((s) => s.toLowerCase()).join(', ')}`,
            );
          }
          return upper;
        },
      ),
    [
      'coderunner deployments list',
      'coderunner deployments list --project web --status running',
      'coderunner deployments list --json | jq -r ".[].publicUrl"',
    ],
  ).action(
    handler<{ project?: string; status?: DeploymentFilter['status'] }>(async (ctx, _args, opts) => {
      const client = ctx.client();
      const filter: DeploymentFilter = {};
      if (opts.project) filter.projectId = (await resolveProject(client, opts.project)).id;
      if (opts.status) filter.status = opts.status;
      const found: Deployment[] = [];
      for await (const d of allDeployments(client, filter)) found.push(d);
      if (ctx.json) {
        ctx.out.printJson(found.map(deploymentJson));
        return;
      }
      if (!found.length) {
        ctx.out.print(
          opts.project || opts.status
            ? 'No deployments match'
            : 'No deployments yet: deploy a folder with `coderunner deploy --project <project>`',
        );
        return;
      }
      const names = await projectNames(client);
      const n = uniquePrefixLength(found.map((d) => d.id));
      if (found.some((d) => d.current))
        ctx.out.info(ctx.out.style("* current: the deployment its project's URL serves", 'dim', true));
      // A FAILED deployment's reason (its first line; `deployments show` has the rest) when there is one.
      const reasons = found.some((d) => d.failureReason);
      ctx.out.table(
        ['ID', 'PROJECT', 'STATUS', 'RUNTIME', 'DB', 'CREATED', 'URL', ...(reasons ? ['REASON'] : [])],
        found.map((d) => [
          // `*`: the project's current deployment, the one its URL serves.
          `${d.id.slice(0, n)}${d.current ? ' *' : ''}`,
          cell(names.get(d.projectId) ?? d.projectId, 30),
          styledStatus(ctx, d.status),
          d.runtimeType ?? '-',
          d.hasDatabase ? 'pg' : '-',
          shortDate(d.createdAt),
          d.publicUrl ?? '-',
          ...(reasons ? [cell(d.failureReason?.split('\n')[0] ?? '-', 80)] : []),
        ]),
      );
    }),
  );

  examples(
    deployments
      .command('show')
      .alias('get')
      .description('show one deployment')
      .argument('<deployment>', DEPLOYMENT_ARG),
    ['coderunner deployments show 3f0c2a1b', 'coderunner deployments show 3f0c --json'],
  ).action(
    handler(async (ctx, [ref]) => {
      const client = ctx.client();
      const found = await resolveDeployment(client, ref!);
      // Found by a prefix (through the list): get it for what it uses.
      const d =
        'usage' in found ? (found as DeploymentDetail) : await client.deployments.get.query({ id: found.id });
      showDeployment(ctx, d, ctx.json ? undefined : await projectName(client, d.projectId));
    }),
  );

  examples(
    deployments
      .command('stop')
      .description('stop a running deployment (its URL answers 503 until it is started again)')
      .argument('<deployment>', DEPLOYMENT_ARG),
    ['coderunner deployments stop 3f0c2a1b'],
  ).action(
    handler(async (ctx, [ref]) => {
      const client = ctx.client();
      const d = await client.deployments.stop.mutate({ id: (await resolveDeployment(client, ref!)).id });
      if (ctx.json) ctx.out.printJson(deploymentJson(d));
      else ctx.out.print(`Stopped deployment ${d.id}`);
    }),
  );

  examples(
    deployments
      .command('start')
      .description(
        'start a stopped or failed deployment again from its stored source, its restart count afresh (queued; follow it with `coderunner logs <deployment> --follow`)',
      )
      .argument('<deployment>', DEPLOYMENT_ARG),
    ['coderunner deployments start 3f0c2a1b', 'coderunner deployments start 3f0c && coderunner logs 3f0c -f'],
  ).action(
    handler(async (ctx, [ref]) => {
      const client = ctx.client();
      const d = await client.deployments.start.mutate({ id: (await resolveDeployment(client, ref!)).id });
      if (ctx.json) ctx.out.printJson(deploymentJson(d));
      else ctx.out.print(`Starting deployment ${d.id} (${d.status})`);
    }),
  );

  examples(
    deployments
      .command('destroy')
      .alias('rm')
      .description(
        'destroy a deployment: its app, its database and its stored source (asks first unless --yes)',
      )
      .argument('<deployment>', DEPLOYMENT_ARG)
      .option('-y, --yes', 'do not ask for confirmation (needed when there is no terminal)'),
    ['coderunner deployments destroy 3f0c2a1b', 'coderunner deployments destroy 3f0c --yes --json'],
  ).action(
    handler<{ yes?: boolean }>(async (ctx, [ref], opts) => {
      const client = ctx.client();
      const d = await resolveDeployment(client, ref!);
      const what = d.hasDatabase
        ? " (the project's database stays; `coderunner db reset` or deleting the project drops it)"
        : '';
      await confirmOrRefuse({
        yes: opts.yes,
        refused: `not destroying deployment ${d.id}`,
        question: `Destroy deployment ${d.id} (${d.status})${what}?`,
        declined: 'not destroyed',
      });
      const destroyed = await client.deployments.destroy.mutate({ id: d.id });
      if (ctx.json) ctx.out.printJson(deploymentJson(destroyed));
      else ctx.out.print(`Destroyed deployment ${destroyed.id}`);
    }),
  );
}

/** `coderunner rollback <deployment>` and `coderunner redeploy <deployment>`. */
export function registerReleaseCommands(program: Command): void {
  const kinds = {
    rollback: {
      description:
        "deploy an earlier deployment's stored source again, with the environment variables it ran with; once it runs, the project URL serves it",
      examples: ['coderunner rollback 3f0c2a1b', 'coderunner rollback 3f0c --detach --json'],
    },
    redeploy: {
      description:
        "deploy a deployment's stored source again, with the project's environment variables as they are now (e.g. after `coderunner env set`)",
      examples: [
        'coderunner redeploy 3f0c2a1b',
        'coderunner env set API_KEY=… -p web && coderunner redeploy 3f0c',
      ],
    },
  } as const;
  for (const kind of ['rollback', 'redeploy'] as const) {
    examples(
      program
        .command(kind)
        .description(kinds[kind].description)
        .argument('<deployment>', DEPLOYMENT_ARG)
        .option('-d, --detach', 'return right after it is queued, printing the new deployment id')
        .option(
          '--no-cache',
          "build without the project's build cache (it is dropped; this build fills it again)",
        )
        .addHelpText(
          'after',
          `
It creates a new deployment (the earlier one is not changed) and follows it like \`coderunner deploy\`:
the old version keeps serving the project URL until the new one answers, and stops after a drain.
Needs the earlier deployment's stored source: a destroyed deployment has none.
The project's database is not rolled back: the new deployment uses it with today's data.`,
        ),
      [...kinds[kind].examples],
    ).action(
      handler<{ detach?: boolean; cache?: boolean }>(async (ctx, [ref], opts) => {
        const client = ctx.client();
        const earlier = await resolveDeployment(client, ref!);
        const input = { id: earlier.id, ...(opts.cache === false ? { noCache: true } : {}) };
        const created =
          kind === 'rollback'
            ? await client.deployments.rollback.mutate(input)
            : await client.deployments.redeploy.mutate(input);
        if (kind === 'rollback' && earlier.hasDatabase && !ctx.json)
          ctx.out.info(
            `Rolling back the code only: the project's database keeps today's data (it is not rolled back)`,
          );
        await followRelease(ctx, client, created, { detach: opts.detach });
      }),
    );
  }
}

export function registerOpenCommand(program: Command): void {
  examples(
    program
      .command('open')
      .description("print a deployment's URL; with --browser, also open it (only when stdout is a terminal)")
      .argument('<deployment>', DEPLOYMENT_ARG)
      .option('--browser', 'open the URL with xdg-open (open on macOS) too'),
    ['coderunner open 3f0c2a1b', 'coderunner open 3f0c --browser', 'curl "$(coderunner open 3f0c)"'],
  ).action(
    handler<{ browser?: boolean }>(async (ctx, [ref], opts) => {
      const d = await resolveDeployment(ctx.client(), ref!);
      if (!d.publicUrl) {
        throw new CliError(
          `deployment ${d.id} has no URL yet (it is ${d.status}); it gets one when it first runs`,
        );
      }
      if (ctx.json) ctx.out.printJson({ id: d.id, status: d.status, url: d.publicUrl });
      else ctx.out.print(d.publicUrl);
      if (d.status !== 'RUNNING') ctx.out.warn(`deployment ${d.id} is ${d.status}: its URL answers 503`);
      if (opts.browser && process.stdout.isTTY) await openInBrowser(ctx, d.publicUrl);
    }),
  );
}
