/**
 * Copying a folder out of a sandbox's app folder onto this machine (a static site's files, served by
 * the server afterwards). The folder is the tenant's: only folders and regular files are copied,
 * each opened without following links (O_NOFOLLOW) and checked to be what lstat said, so a link
 * planted by the build (say dist/x -> /etc/shadow) copies nothing; files with several hard links
 * are skipped too. Nothing of the sandbox runs meanwhile (the build has ended), and the copy is
 * bounded in files and bytes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { SandboxError } from '../types';

export interface CopyOutLimits {
  maxBytes: number;
  maxFiles: number;
}

export interface CopyOutResult {
  files: number;
  bytes: number;
  /** Paths (relative) left out: links, devices, files with several hard links. */
  skipped: string[];
}

export async function copyTreeOut(
  source: string,
  dest: string,
  limits: CopyOutLimits,
): Promise<CopyOutResult> {
  const result: CopyOutResult = { files: 0, bytes: 0, skipped: [] };
  const top = await fs.promises.lstat(source).catch(() => null);
  if (!top?.isDirectory()) throw new SandboxError(`${path.basename(source)} is not a folder`);
  await fs.promises.mkdir(dest, { recursive: true, mode: 0o755 });
  await copyDir(source, dest, '', limits, result);
  return result;
}

async function copyDir(
  source: string,
  dest: string,
  relative: string,
  limits: CopyOutLimits,
  result: CopyOutResult,
): Promise<void> {
  const entries = await fs.promises.readdir(path.join(source, relative), { withFileTypes: true });
  for (const entry of entries) {
    const rel = path.join(relative, entry.name);
    const from = path.join(source, rel);
    const to = path.join(dest, rel);
    const stat = await fs.promises.lstat(from);
    if (stat.isDirectory()) {
      await fs.promises.mkdir(to, { mode: 0o755 });
      await copyDir(source, dest, rel, limits, result);
      continue;
    }
    if (!stat.isFile() || stat.nlink > 1) {
      result.skipped.push(rel);
      continue;
    }
    if (++result.files > limits.maxFiles)
      throw new SandboxError(`more than ${limits.maxFiles} files to copy out of the sandbox`);
    const handle = await fs.promises.open(from, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      const opened = await handle.stat();
      // Swapped since lstat: not the file we looked at.
      if (!opened.isFile() || opened.ino !== stat.ino || opened.dev !== stat.dev) {
        result.skipped.push(rel);
        result.files--;
        continue;
      }
      result.bytes += opened.size;
      if (result.bytes > limits.maxBytes)
        throw new SandboxError(
          `more than ${Math.round(limits.maxBytes / 1024 / 1024)} MB to copy out of the sandbox`,
        );
      const out = await fs.promises.open(to, 'wx', 0o644);
      try {
        const buffer = Buffer.alloc(64 * 1024);
        for (let position = 0; ; ) {
          const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
          if (bytesRead === 0) break;
          await out.write(buffer, 0, bytesRead);
          position += bytesRead;
        }
      } finally {
        await out.close();
      }
    } finally {
      await handle.close();
    }
  }
}
