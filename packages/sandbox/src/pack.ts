/**
 * Packing a folder for upload: a gzipped tar of what git would commit, whether or not the folder is
 * a git repository. The one packer: `coderunner deploy` uses it, and so do the server's tests and the
 * bench, so they upload what the CLI builds.
 *
 * What is left out, by rules applied the way git applies them:
 * - always: `node_modules` and `.git`, anywhere (no rule can bring them back);
 * - by default: `.venv` and `__pycache__` folders (a `!` rule in an ignore file brings them back);
 * - whatever a `.gitignore` says, at the top or in any subfolder (its rules apply below its folder,
 *   the deepest file that has a say wins, and a file inside an ignored folder cannot be brought back);
 * - whatever a `.coderunnerignore` says: the same syntax, read after the `.gitignore` of its folder,
 *   so it can also bring back (`!dist/`) what `.gitignore` leaves out.
 *
 * Symbolic links are packed as links (never followed); sockets, pipes and devices are skipped.
 * This module imports only node built-ins, node-tar and ignore (no server code): the CLI bundles it
 * through `@coderunner/sandbox/pack`.
 */
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import ignore, { type Ignore } from 'ignore';
import { create as createTar } from 'tar';

/** Never uploaded, whatever an ignore file says. */
export const ALWAYS_IGNORED: readonly string[] = ['node_modules', '.git'];
/** Left out unless an ignore file brings them back with `!`. */
export const DEFAULT_IGNORE_RULES: readonly string[] = ['.venv/', '__pycache__/'];
export const IGNORE_FILES: readonly string[] = ['.gitignore', '.coderunnerignore'];

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

/**
 * The lines of an ignore file in folder `base` (relative to the packed folder), rewritten to apply
 * from the packed folder's top, so that one rule list in git's order of precedence (defaults, then
 * each folder's files, parents before children) decides, the last matching rule winning:
 * - a pattern with a slash before its end is anchored to its file's folder: `base/pattern`;
 * - one without matches at any depth below that folder: `base/<any folders>/pattern`.
 */
export function rebaseRules(text: string, base: string): string[] {
  const rules: string[] = [];
  for (const raw of text.replace(/^\uFEFF/, '').split(/\r?\n/)) {
    if (!raw.trim() || raw.startsWith('#')) continue;
    if (!base) {
      rules.push(raw);
      continue;
    }
    const negated = raw.startsWith('!');
    const pattern = negated ? raw.slice(1) : raw;
    const body = pattern.replace(/\/+$/, '');
    const anchored = body.includes('/');
    const rebased = anchored ? `${base}/${pattern.replace(/^\/+/, '')}` : `${base}/**/${pattern}`;
    rules.push(`${negated ? '!' : ''}${rebased}`);
  }
  return rules;
}

/** The entries to pack, in a stable order: each folder before its contents. */
export function listEntries(root: string): { entries: string[]; skipped: string[] } {
  const rules: Ignore = ignore().add([...DEFAULT_IGNORE_RULES]);
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
