/**
 * Packing a folder for upload, on disk: a gzipped tar of what git would commit, whether or not the
 * folder is a git repository. The one packer for Node: `coderunner deploy` uses it, and so do the
 * server's tests and the bench, so they upload what the CLI builds. (The dashboard packs in the
 * browser with the same rules.)
 *
 * What is left out: the rules in upload-rules.ts, shared with the dashboard's packer.
 *
 * Symbolic links are packed as links (never followed); sockets, pipes and devices are skipped.
 * This module imports only node built-ins, node-tar and the rules (no server code): the CLI bundles
 * it through `@coderunner/api/pack`.
 */
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { create as createTar } from 'tar';
import { ALWAYS_IGNORED, IGNORE_FILES, rebaseRules, uploadRules } from './upload-rules';

export interface PackResult {
  archive: Buffer;
  /** Files and symbolic links in the archive (folders not counted). */
  files: number;
  /** Bytes of those files before compression. */
  bytes: number;
  /** Relative paths (POSIX separators) of the entries, folders with a trailing slash. */
  entries: string[];
  /** Things that could not be packed (special files), for a warning. */
  skipped: string[];
}

/** The entries to pack, in a stable order: each folder before its contents. */
export function listEntries(root: string): { entries: string[]; skipped: string[] } {
  const rules = uploadRules();
  const entries: string[] = [];
  const skipped: string[] = [];
  const walk = (dir: string, rel: string) => {
    for (const name of IGNORE_FILES) {
      let text: string;
      try {
        text = fs.readFileSync(path.join(dir, name), 'utf8');
      } catch {
        continue;
      }
      rules.add(rebaseRules(text, rel));
    }
    for (const name of fs.readdirSync(dir).sort()) {
      if (ALWAYS_IGNORED.includes(name)) continue;
      const full = path.join(dir, name);
      const childRel = rel ? `${rel}/${name}` : name;
      const stat = fs.lstatSync(full);
      if (stat.isDirectory()) {
        // A folder left out is not entered: nothing in it can be brought back (as in git).
        if (rules.ignores(`${childRel}/`)) continue;
        entries.push(`${childRel}/`);
        walk(full, childRel);
      } else if (stat.isFile() || stat.isSymbolicLink()) {
        if (!rules.ignores(childRel)) entries.push(childRel);
      } else if (!rules.ignores(childRel)) {
        skipped.push(childRel);
      }
    }
  };
  walk(root, '');
  return { entries, skipped };
}

/** A gzipped tar of `dir`'s contents (entries relative to it; modes and symbolic links kept). */
export async function packFolder(dir: string): Promise<PackResult> {
  const root = path.resolve(dir);
  const { entries, skipped } = listEntries(root);
  let files = 0;
  let bytes = 0;
  for (const entry of entries) {
    if (entry.endsWith('/')) continue;
    files++;
    const stat = fs.lstatSync(path.join(root, entry));
    if (stat.isFile()) bytes += stat.size;
  }
  if (entries.length === 0) {
    // node-tar refuses an empty list; two zero blocks are an empty tar.
    return { archive: zlib.gzipSync(Buffer.alloc(1024)), files, bytes, entries, skipped };
  }
  const stream = createTar(
    // Every entry is listed, so folders must not be walked again (that would add ignored files).
    { gzip: true, cwd: root, portable: true, noDirRecurse: true },
    entries.map((e) => (e.endsWith('/') ? e.slice(0, -1) : e)),
  );
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return { archive: Buffer.concat(chunks), files, bytes, entries, skipped };
}

export { ALWAYS_IGNORED, DEFAULT_IGNORE_RULES, IGNORE_FILES, rebaseRules } from './upload-rules';
