import fs from 'node:fs';
import path from 'node:path';
import type { FileEntry } from '@coderunner/sandbox';
import { isSealedBox, type Keyring, needsRotation, open, type SealedBox, seal } from '../secrets';

export interface SourceOptions {
  runtime?: 'nodejs' | 'python' | 'manifest';
  database?: 'postgres';
  /** Build without the project's build cache (dropped first); the build after it fills it again. */
  noCache?: boolean;
}

/** What `<deploymentId>.json` holds: the options, and the environment snapshot sealed to the deployment. */
interface StoredOptions extends SourceOptions {
  env?: SealedBox;
}

/** Key rotation of the stored snapshots: how many were looked at, re-encrypted, already current. */
export interface SnapshotRotation {
  scanned: number;
  rotated: number;
  skipped: number;
}

/**
 * Uploaded sources, kept in the data folder so a STOPPED deployment can start again:
 * `<dir>/<deploymentId>.tar.gz` and the options it was deployed with, `<deploymentId>.json`, which
 * also holds the deployment's environment snapshot (project variables merged with the deploy's
 * overrides) as a sealed box whose additional data is the deployment id: never plaintext on disk.
 * With several replicas this folder must be shared storage (a network volume or a bucket).
 */
export class SourceStore {
  /** `keyring` seals and opens environment snapshots (a store without one keeps none). */
  constructor(
    private readonly dir: string,
    private readonly keyring?: Keyring,
  ) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  private archive(id: string) {
    return path.join(this.dir, `${id}.tar.gz`);
  }

  private optionsFile(id: string) {
    return path.join(this.dir, `${id}.json`);
  }

  /**
   * Write atomically (temp file + rename): a crash never leaves half an archive under the real name.
   * `env`, when it has variables, is sealed to `id` into the options file.
   */
  save(id: string, archive: Uint8Array, options: SourceOptions, env?: Record<string, string>): void {
    const stored: StoredOptions = { ...options };
    if (env && Object.keys(env).length) stored.env = seal(this.requireKeyring(), env, id);
    const written: string[] = [];
    try {
      for (const [file, data] of [
        [this.archive(id), archive],
        [this.optionsFile(id), JSON.stringify(stored)],
      ] as const) {
        const tmp = `${file}.tmp`;
        written.push(tmp, file);
        fs.writeFileSync(tmp, data, { mode: 0o600 });
        fs.renameSync(tmp, file);
      }
    } catch (err) {
      // A full or read-only disk: leave nothing of this upload behind.
      for (const f of written) fs.rmSync(f, { force: true });
      throw err;
    }
  }

  async read(id: string): Promise<Buffer> {
    return fs.promises.readFile(this.archive(id));
  }

  readOptions(id: string): SourceOptions {
    const { env: _env, ...options } = this.readStored(id);
    return options;
  }

  /**
   * The deployment's environment snapshot ({} when it has none). Throws SecretBoxError when it
   * cannot be opened (a key missing from the keyring, altered data); messages carry no value.
   */
  readEnv(id: string): Record<string, string> {
    const { env } = this.readStored(id);
    if (env === undefined) return {};
    return open<Record<string, string>>(this.requireKeyring(), env, id);
  }

  exists(id: string): boolean {
    return fs.existsSync(this.archive(id));
  }

  /**
   * The stored source, options and environment snapshot of `fromId`, as `toId`'s (a rollback or a
   * redeploy: a new deployment built from an earlier one's source and environment). The snapshot is
   * sealed again, to `toId`; or, with `env` (a redeploy: the project's variables now), replaced by
   * it. Throws ENOENT when `fromId` has no stored source.
   */
  copy(fromId: string, toId: string, env?: Record<string, string>, options: SourceOptions = {}): void {
    const { noCache: _noCache, ...earlier } = this.readStored(fromId);
    const stored: StoredOptions = { ...earlier, ...options };
    if (env) {
      if (Object.keys(env).length) stored.env = seal(this.requireKeyring(), env, toId);
      else delete stored.env;
    } else if (stored.env !== undefined) {
      const keyring = this.requireKeyring();
      stored.env = seal(keyring, open<Record<string, string>>(keyring, stored.env, fromId), toId);
    }
    const written: string[] = [];
    try {
      const archiveTmp = `${this.archive(toId)}.tmp`;
      written.push(archiveTmp, this.archive(toId));
      fs.copyFileSync(this.archive(fromId), archiveTmp);
      fs.chmodSync(archiveTmp, 0o600);
      fs.renameSync(archiveTmp, this.archive(toId));
      written.push(this.optionsFile(toId));
      writeAtomically(this.optionsFile(toId), JSON.stringify(stored));
    } catch (err) {
      for (const f of written) fs.rmSync(f, { force: true });
      throw err;
    }
  }

  remove(id: string): void {
    fs.rmSync(this.archive(id), { force: true });
    fs.rmSync(this.optionsFile(id), { force: true });
  }

  /**
   * Seals again, with the active key, every environment snapshot sealed with an older one (each
   * options file rewritten atomically); snapshots already on the active key are not opened.
   */
  rotateKeys(): SnapshotRotation {
    const keyring = this.requireKeyring();
    const result: SnapshotRotation = { scanned: 0, rotated: 0, skipped: 0 };
    for (const entry of fs.readdirSync(this.dir)) {
      const id = entry.endsWith('.json') ? entry.slice(0, -'.json'.length) : null;
      if (!id || !fs.existsSync(this.archive(id))) continue;
      const stored = this.readStored(id);
      if (stored.env === undefined) continue;
      result.scanned++;
      if (!isSealedBox(stored.env) || !needsRotation(keyring, stored.env)) {
        result.skipped++;
        continue;
      }
      try {
        stored.env = seal(keyring, open<Record<string, string>>(keyring, stored.env, id), id);
      } catch (err) {
        throw new Error(`deployment ${id}'s variables: ${(err as Error).message}`, { cause: err });
      }
      writeAtomically(this.optionsFile(id), JSON.stringify(stored));
      // Destroyed meanwhile: leave nothing of it behind.
      if (!fs.existsSync(this.archive(id))) fs.rmSync(this.optionsFile(id), { force: true });
      result.rotated++;
    }
    return result;
  }

  private readStored(id: string): StoredOptions {
    let text: string;
    try {
      text = fs.readFileSync(this.optionsFile(id), 'utf8');
    } catch {
      return {};
    }
    try {
      return JSON.parse(text) as StoredOptions;
    } catch {
      return {};
    }
  }

  private requireKeyring(): Keyring {
    if (!this.keyring) throw new Error('this source store has no encryption keys for environment snapshots');
    return this.keyring;
  }
}

/** Temp file (0600) + rename: readers see the old content or the new, never half of it. */
export function writeAtomically(file: string, data: string | Uint8Array): void {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  try {
    fs.writeFileSync(tmp, data, { mode: 0o600 });
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** Every regular file under `root` as upload entries (paths relative, modes kept). */
export async function readFilesForUpload(root: string): Promise<FileEntry[]> {
  const out: FileEntry[] = [];
  const walk = async (dir: string) => {
    for (const entry of await fs.promises.readdir(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile()) {
        const stat = await fs.promises.stat(full);
        out.push({
          path: path.relative(root, full),
          data: await fs.promises.readFile(full),
          mode: stat.mode & 0o777,
        });
      }
    }
  };
  await walk(root);
  return out;
}
