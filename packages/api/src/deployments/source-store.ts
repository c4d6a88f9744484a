import fs from 'node:fs';
import path from 'node:path';
import type { FileEntry } from '@coderunner/sandbox';

export interface SourceOptions {
  runtime?: 'nodejs' | 'python' | 'manifest';
  database?: 'postgres';
}

/**
 * Uploaded sources, kept in the data folder so a STOPPED deployment can start again:
 * `<dir>/<deploymentId>.tar.gz` and the options it was deployed with, `<deploymentId>.json`.
 * With several replicas this folder must be shared storage (a network volume or a bucket).
 */
export class SourceStore {
  constructor(private readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  private archive(id: string) {
    return path.join(this.dir, `${id}.tar.gz`);
  }

  private optionsFile(id: string) {
    return path.join(this.dir, `${id}.json`);
  }

  /** Write atomically (temp file + rename): a crash never leaves half an archive under the real name. */
  save(id: string, archive: Uint8Array, options: SourceOptions): void {
    const written: string[] = [];
    try {
      for (const [file, data] of [
        [this.archive(id), archive],
        [this.optionsFile(id), JSON.stringify(options)],
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

  /** The stored source and options of `fromId`, kept again for `toId` (rollback, redeploy). */
  copy(fromId: string, toId: string): void {
    this.save(toId, fs.readFileSync(this.archive(fromId)), this.readOptions(fromId));
  }

  async read(id: string): Promise<Buffer> {
    return fs.promises.readFile(this.archive(id));
  }

  readOptions(id: string): SourceOptions {
    try {
      return JSON.parse(fs.readFileSync(this.optionsFile(id), 'utf8')) as SourceOptions;
    } catch {
      return {};
    }
  }

  exists(id: string): boolean {
    return fs.existsSync(this.archive(id));
  }

  remove(id: string): void {
    fs.rmSync(this.archive(id), { force: true });
    fs.rmSync(this.optionsFile(id), { force: true });
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
