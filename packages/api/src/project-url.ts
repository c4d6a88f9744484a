/**
 * A project's stable URL: `http://<slug>.<apps base host>/`, slug = `<readable name>-<key>`, where
 * the key is the first 10 hex digits of the project's id (40 random bits of a UUID v4). The key alone
 * names the project: a rename changes the readable part the API returns, and old links keep working.
 * Ids are never reused, so neither is a key; projects.create refuses an id whose key is taken.
 * Pure functions (no Node imports): the dashboard and the CLI may use them too.
 */

export const PROJECT_KEY_LENGTH = 10;

/** The 10 hex digits that name a project in its URL. */
export function projectKey(projectId: string): string {
  return projectId.replace(/-/g, '').slice(0, PROJECT_KEY_LENGTH).toLowerCase();
}

/** `my-app-3f2a9c1b4d`: the project's name made DNS-safe (at most 40 characters), then its key. */
export function projectSlug(project: { id: string; name: string }): string {
  const readable = project.name
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+/, '')
    .slice(0, 40)
    .replace(/-+$/, '');
  return `${readable || 'project'}-${projectKey(project.id)}`;
}

// A deployment's host label is a whole UUID (its last group has 12 hex digits), so it never matches.
const PROJECT_HOST = /^(?:[a-z0-9-]*-)?([0-9a-f]{10})\./i;

/** The project key of a Host header (`my-app-3f2a9c1b4d.localhost:8080`), or null. */
export function projectKeyOfHost(host: string | undefined): string | null {
  return PROJECT_HOST.exec(host ?? '')?.[1]?.toLowerCase() ?? null;
}

/** The smallest and largest UUID with this key: a range scan of the primary key finds its project. */
export function projectIdRange(key: string): { lo: string; hi: string } {
  const head = `${key.slice(0, 8)}-${key.slice(8, 10)}`;
  return { lo: `${head}00-0000-0000-000000000000`, hi: `${head}ff-ffff-ffff-ffffffffffff` };
}
