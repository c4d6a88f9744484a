/**
 * Projects' environment variables, kept in the server's data folder (shared by replicas) rather than
 * the database: `<dataDir>/env/<projectId>.json` holds one sealed box (AES-256-GCM with the keyring,
 * the project id as additional data) of the JSON map `{ NAME: value }`. Files are written atomically
 * (temp file + rename, mode 0600); a project without variables has no file. Callers serialise
 * read-modify-write cycles by locking the project's row (see routers/env.ts and rotate-keys).
 */
import fs from 'node:fs';
import path from 'node:path';
import { TRPCError } from '@trpc/server';
import { writeAtomically } from './deployments/source-store';
import { envSetProblem } from './env-vars';
import { isSealedBox, type Keyring, needsRotation, open, SecretBoxError, seal } from './secrets';

const PROJECT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export type EnvVars = Record<string, string>;

export class ProjectEnvStore {
  constructor(
    readonly dir: string,
    private readonly keyring: Keyring,
  ) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  private file(projectId: string): string {
    if (!PROJECT_ID.test(projectId)) throw new Error('not a project id');
    return path.join(this.dir, `${projectId.toLowerCase()}.json`);
  }

  /** The project's variables ({} without any). Throws SecretBoxError when the file cannot be opened. */
  read(projectId: string): EnvVars {
    let text: string;
    try {
      text = fs.readFileSync(this.file(projectId), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw err;
    }
    let box: unknown;
    try {
      box = JSON.parse(text);
    } catch {
      throw new SecretBoxError('malformed', 'the stored variables are not an encrypted value');
    }
    return open<EnvVars>(this.keyring, box, projectId.toLowerCase());
  }

  /** Replaces the project's variables (no variables: no file). */
  write(projectId: string, vars: EnvVars): void {
    const file = this.file(projectId);
    if (Object.keys(vars).length === 0) {
      fs.rmSync(file, { force: true });
      return;
    }
    writeAtomically(file, JSON.stringify(seal(this.keyring, vars, projectId.toLowerCase())));
  }

  /** Forgets the project's variables (its deletion). */
  remove(projectId: string): void {
    fs.rmSync(this.file(projectId), { force: true });
  }

  /** Ids of the projects that have variables. */
  projectIds(): string[] {
    return fs
      .readdirSync(this.dir)
      .filter((f) => f.endsWith('.json') && PROJECT_ID.test(f.slice(0, -'.json'.length)))
      .map((f) => f.slice(0, -'.json'.length));
  }

  /**
   * Seals the project's file again with the active key, unless it already is (then it is not even
   * opened). Call it with the project's row locked, so no `env.set` writes in between.
   */
  rotate(projectId: string): 'rotated' | 'skipped' | 'missing' {
    let box: unknown;
    try {
      box = JSON.parse(fs.readFileSync(this.file(projectId), 'utf8'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
      throw err;
    }
    if (isSealedBox(box) && !needsRotation(this.keyring, box)) return 'skipped';
    this.write(projectId, this.read(projectId));
    return 'rotated';
  }

  /**
   * The variables a new deployment of the project gets: the project's, overridden by the deploy's
   * own (`deploy --env`), checked together against the limits (BAD_REQUEST naming the problem).
   */
  snapshot(projectId: string, overrides: EnvVars = {}): EnvVars {
    const merged = { ...readForUser(this, projectId), ...overrides };
    const problem = envSetProblem(merged);
    if (problem) throw new TRPCError({ code: 'BAD_REQUEST', message: problem });
    return merged;
  }
}

/** `store.read`, with a file that cannot be opened told to the caller as PRECONDITION_FAILED. */
export function readForUser(store: ProjectEnvStore, projectId: string): EnvVars {
  try {
    return store.read(projectId);
  } catch (err) {
    if (!(err instanceof SecretBoxError)) throw err;
    // SecretBoxError messages name key ids, never key material or values.
    throw new TRPCError({
      code: 'PRECONDITION_FAILED',
      message: `cannot decrypt the project's variables: ${err.message}`,
      cause: err,
    });
  }
}
