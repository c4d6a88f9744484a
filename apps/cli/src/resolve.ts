/** Finding the caller's resources by what a person types: a name or an id. */
import type { CodeRunnerClient } from '@coderunner/api/client';
import { CliError, trpcCode } from './errors';
import { printable } from './output';
import type { Project } from './views';

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
