/**
 * The CLI's JSON shapes. They are part of its interface (scripts parse them), so they are built field
 * by field here instead of passing on whatever the server returned: a field added to the API does not
 * appear in, or reorder, the CLI's output by accident. Dates are ISO 8601 strings.
 */
import type { RouterOutputs } from '@coderunner/api';

export type User = RouterOutputs['auth']['me'];
export type Project = RouterOutputs['projects']['get'];

export interface UserJson {
  id: string;
  email: string;
  planType: string;
  createdAt: string;
  updatedAt: string;
}

export interface ProjectJson {
  id: string;
  name: string;
  description: string | null;
  createdAt: string;
  updatedAt: string;
}

export const userJson = (u: User): UserJson => ({
  id: u.id,
  email: u.email,
  planType: u.planType,
  createdAt: u.createdAt.toISOString(),
  updatedAt: u.updatedAt.toISOString(),
});

export const projectJson = (p: Project): ProjectJson => ({
  id: p.id,
  name: p.name,
  description: p.description,
  createdAt: p.createdAt.toISOString(),
  updatedAt: p.updatedAt.toISOString(),
});
