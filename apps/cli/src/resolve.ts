/** Finding the caller's resources by what a person types: a name, an id, or the start of an id. */
import type { CodeRunnerClient, DeploymentStatus } from '@coderunner/api/client';
import { CliError, trpcCode, UsageError } from './errors';
import { cell, printable, shortDate } from './output';
import type { Deployment, Project } from './views';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Every project of the caller, newest first, following the list's pages. */
export async function* allProjects(client: CodeRunnerClient, pageSize = 100): AsyncGenerator<Project> {
  let cursor: string | null = null;
  do {
    const page: { items: Project[]; nextCursor: string | null } = await client.projects.list.query({
      cursor,
      limit: pageSize,
    });
    yield* page.items;
    cursor = page.nextCursor;
  } while (cursor);
}

/**
 * `ref` is a project id (UUID) or a project name. An id that matches none of the caller's projects is
 * also tried as a name, so a project may be called anything.
 */
export async function resolveProject(client: CodeRunnerClient, ref: string): Promise<Project> {
  if (UUID.test(ref.trim())) {
    try {
      return await client.projects.get.query({ id: ref.trim().toLowerCase() });
    } catch (err) {
      const code = trpcCode(err);
      if (code !== 'NOT_FOUND' && code !== 'BAD_REQUEST') throw err;
    }
  }
  const name = ref.trim(); // the server trims names too
  for await (const project of allProjects(client)) if (project.name === name) return project;
  throw new CliError(`project "${printable(ref)}" not found`);
}

export interface DeploymentFilter {
  projectId?: string;
  status?: DeploymentStatus;
}

/** Every deployment of the caller (optionally filtered), newest first, following the list's pages. */
export async function* allDeployments(
  client: CodeRunnerClient,
  filter: DeploymentFilter = {},
  pageSize = 100,
): AsyncGenerator<Deployment> {
  let cursor: string | null = null;
  do {
    const page: { items: Deployment[]; nextCursor: string | null } = await client.deployments.list.query({
      ...filter,
      cursor,
      limit: pageSize,
    });
    yield* page.items;
    cursor = page.nextCursor;
  } while (cursor);
}

const noDeployment = (ref: string) => new CliError(`no deployment matches "${printable(ref)}"`);

/**
 * `ref` is a deployment id or the start of one (any length, as long as it is unique among the
 * caller's deployments, destroyed ones included). Several matches are a usage error listing them.
 */
export async function resolveDeployment(client: CodeRunnerClient, ref: string): Promise<Deployment> {
  const wanted = ref.trim().toLowerCase();
  if (!wanted) throw new UsageError('the deployment must be an id or the start of one');
  if (UUID.test(wanted)) {
    try {
      return await client.deployments.get.query({ id: wanted });
    } catch (err) {
      const code = trpcCode(err);
      if (code === 'NOT_FOUND' || code === 'BAD_REQUEST') throw noDeployment(ref);
      throw err;
    }
  }
  if (!/^[0-9a-f-]+$/.test(wanted)) throw noDeployment(ref);
  const matches: Deployment[] = [];
  for await (const d of allDeployments(client)) if (d.id.startsWith(wanted)) matches.push(d);
  if (matches.length === 1) return matches[0]!;
  if (matches.length === 0) throw noDeployment(ref);
  const shown = matches.slice(0, 10);
  const lines = shown.map((d) => `  ${d.id}  ${d.status.padEnd(12)}  ${shortDate(d.createdAt)}`);
  if (matches.length > shown.length) lines.push(`  … and ${matches.length - shown.length} more`);
  throw new UsageError(
    `"${cell(ref, 40)}" matches ${matches.length} deployments; give more of the id:\n${lines.join('\n')}`,
  );
}

/**
 * The shortest prefix length (at least `min`) that tells these ids apart, for tables: any unique
 * prefix works wherever a deployment is asked for.
 */
export function uniquePrefixLength(ids: readonly string[], min = 8): number {
  for (let n = min; n < 36; n++) {
    if (new Set(ids.map((id) => id.slice(0, n))).size === ids.length) return n;
  }
  return 36;
}
