/**
 * extractTarGz against hostile archives, built byte by byte (tar tools refuse to write most of
 * them): each one is refused with a message a user can act on, and nothing lands outside destDir.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { create as createTar } from 'tar';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { ArchiveError, extractTarGz } from '../src/archive';

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'coderunner-archive-'));
afterAll(() => fs.rmSync(base, { recursive: true, force: true }));

interface Entry {
  name: string;
  /** ustar type flag: 0 file, 1 hard link, 2 symlink, 3 char device, 5 directory, 6 FIFO. */
  type?: '0' | '1' | '2' | '3' | '4' | '5' | '6';
  data?: string | Buffer;
  /** Size written in the header when it differs from the data (a lying header). */
  size?: number;
  linkname?: string;
  mode?: number;
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, '0')}\0`;
}

/** One ustar header block followed by the data, padded to whole blocks. */
function tarEntry(entry: Entry): Buffer {
  const data = Buffer.from(entry.data ?? '');
  const type = entry.type ?? '0';
  const header = Buffer.alloc(512);
  header.write(entry.name, 0, 100);
  header.write(octal(entry.mode ?? (type === '5' ? 0o755 : 0o644), 8), 100);
  header.write(octal(0, 8), 108);
  header.write(octal(0, 8), 116);
  header.write(octal(entry.size ?? data.length, 12), 124);
  header.write(octal(1_700_000_000, 12), 136);
  header.write(' '.repeat(8), 148);
  header.write(type, 156);
  header.write(entry.linkname ?? '', 157, 100);
  header.write('ustar\0', 257);
  header.write('00', 263);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const padding = Buffer.alloc((512 - (data.length % 512)) % 512);
  return Buffer.concat([header, data, padding]);
}

function tar(entries: Entry[]): Buffer {
  return Buffer.concat([...entries.map(tarEntry), Buffer.alloc(1024)]);
}

const tgz = (entries: Entry[]) => zlib.gzipSync(tar(entries));

/** Every path under `dir`, relative to it (folders end with /). */
function tree(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)) + (e.isDirectory() ? '/' : ''))
    .sort();
}

let sandboxDir: string;
let dest: string;

beforeEach(() => {
  // dest sits three folders deep, so that ../../ from it is still inside sandboxDir, where we can look.
  sandboxDir = fs.mkdtempSync(path.join(base, 't-'));
  fs.writeFileSync(path.join(sandboxDir, 'bystander.txt'), 'untouched');
  dest = path.join(sandboxDir, 'a', 'b', 'dest');
});

/** Extraction must fail with `message`, and leave nothing but the bystander (and empty folders). */
async function expectRefused(archive: Buffer, message: string | RegExp, options = {}): Promise<void> {
  const error = await extractTarGz(archive, dest, options).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ArchiveError);
  expect((error as Error).message).toMatch(message);
  expect(tree(sandboxDir).filter((p) => !p.endsWith('/'))).toEqual(['bystander.txt']);
  expect(fs.readFileSync(path.join(sandboxDir, 'bystander.txt'), 'utf8')).toBe('untouched');
  expect(tree(dest)).toEqual([]);
}

describe('extractTarGz refuses unsafe archives', () => {
  it('path traversal with ..', async () => {
    await expectRefused(
      tgz([
        { name: 'ok.txt', data: 'fine' },
        { name: '../../escaped.txt', data: 'pwned' },
      ]),
      'archive entry ../../escaped.txt escapes the project folder (it contains "..")',
    );
    await expectRefused(
      tgz([{ name: 'sub/../../../bystander.txt', data: 'pwned' }]),
      /escapes the project folder/,
    );
  });

  it('absolute paths', async () => {
    const target = path.join(sandboxDir, 'absolute.txt');
    await expectRefused(
      tgz([{ name: target, data: 'pwned' }]),
      `archive entry ${target} has an absolute path; paths must be relative to the project folder`,
    );
  });

  it('symlinks leading out of the project folder', async () => {
    await expectRefused(
      tgz([
        { name: 'link', type: '2', linkname: '../../..' },
        { name: 'link/bystander.txt', data: 'pwned' },
      ]),
      'archive entry link links to ../../.., which is outside the project folder',
    );
    await expectRefused(
      tgz([{ name: 'etc', type: '2', linkname: '/etc' }]),
      /links to \/etc, which is outside/,
    );
    // Climbing out and back in by the right name is still out.
    await expectRefused(
      tgz([{ name: 'sneaky', type: '2', linkname: `../${path.basename(dest)}/x` }]),
      /which is outside the project folder/,
    );
  });

  it('writing through a symlink, even one pointing inside', async () => {
    await expectRefused(
      tgz([
        { name: 'real/', type: '5' },
        { name: 'alias', type: '2', linkname: 'real' },
        { name: 'alias/file.txt', data: 'x' },
      ]),
      'archive entry alias/file.txt is inside alias, which is a symbolic link',
    );
  });

  it('symlink chains that climb out through another link', async () => {
    // Each link alone stays inside; followed together, up/.. is the project folder's parent.
    await expectRefused(
      tgz([
        { name: 'up', type: '2', linkname: '.' },
        { name: 'out', type: '2', linkname: 'up/..' },
      ]),
      'archive entry out links through up, another symbolic link; link to the real path',
    );
  });

  it('hard links to files outside the archive', async () => {
    await expectRefused(
      tgz([{ name: 'passwd', type: '1', linkname: '../../../../../etc/passwd' }]),
      'archive entry passwd links to ../../../../../etc/passwd, which is outside the project folder',
    );
    await expectRefused(
      tgz([{ name: 'passwd', type: '1', linkname: '/etc/passwd' }]),
      /outside the project folder/,
    );
    await expectRefused(
      tgz([
        { name: 'tool', data: 'x' },
        { name: 'alias', type: '1', linkname: 'sub/../tool' },
      ]),
      'archive entry alias links to sub/../tool, which is outside the project folder',
    );
    await expectRefused(
      tgz([{ name: 'ghost', type: '1', linkname: 'missing.txt' }]),
      'archive entry ghost is a hard link to missing.txt, which is not a file in the archive',
    );
  });

  it('device files and FIFOs', async () => {
    await expectRefused(
      tgz([{ name: 'null', type: '3' }]),
      'archive entry null is a character device; only files, folders and links can be uploaded',
    );
    await expectRefused(tgz([{ name: 'disk', type: '4' }]), /is a block device/);
    await expectRefused(tgz([{ name: 'pipe', type: '6' }]), /is a named pipe/);
  });

  it('too many entries', async () => {
    const entries = Array.from({ length: 6 }, (_, i) => ({ name: `f${i}.txt`, data: 'x' }));
    await expectRefused(tgz(entries), /^the archive has more than 5 entries; leave out generated folders/, {
      maxFiles: 5,
    });
    await extractTarGz(tgz(entries.slice(0, 5)), dest, { maxFiles: 5 });
    expect(tree(dest)).toHaveLength(5);
  });

  it('too many bytes, by the headers or by a gzip bomb', async () => {
    await expectRefused(
      tgz([{ name: 'big.bin', data: Buffer.alloc(2048) }]),
      /^the archive unpacks to more than 1 KB; leave out generated folders/,
      { maxBytes: 1024 },
    );
    // 64 MB of zeros after the end of the archive gzip to ~64 KB: cut off without unpacking it all.
    const bomb = zlib.gzipSync(
      Buffer.concat([tar([{ name: 'a.txt', data: 'a' }]), Buffer.alloc(64 * 1024 * 1024)]),
    );
    expect(bomb.length).toBeLessThan(200 * 1024);
    await expectRefused(bomb, /^the archive unpacks to more than 1 MB/, {
      maxBytes: 1024 * 1024,
      maxFiles: 10,
    });
    // Hard links count at their target's size: each becomes a copy when the source is stored and
    // uploaded again, so 100 links to one 600-byte file are 60 KB, not 600 bytes.
    const links = Array.from(
      { length: 100 },
      (_, i): Entry => ({ name: `l${i}`, type: '1', linkname: 'big.bin' }),
    );
    await expectRefused(
      tgz([{ name: 'big.bin', data: Buffer.alloc(600) }, ...links]),
      /^the archive unpacks to more than 1 KB, hard links counted as the copies they become; leave out/,
      { maxBytes: 1024, maxFiles: 200 },
    );
    await extractTarGz(tgz([{ name: 'big.bin', data: Buffer.alloc(600) }, links[0]!]), dest, {
      maxBytes: 1200,
    });
    expect(tree(dest)).toHaveLength(2);
  });

  it('uploads that are not gzipped tar archives', async () => {
    const notArchive =
      'the upload is not a gzipped tar archive (make it with `tar -czf app.tar.gz -C <folder> .`)';
    await expectRefused(Buffer.from('just some text'), notArchive);
    await expectRefused(tar([{ name: 'plain.txt', data: 'x' }]), notArchive); // tar without gzip
    await expectRefused(zlib.gzipSync('gzip, but text inside'), notArchive);
    await expectRefused(tgz([{ name: 'cut.txt', data: 'x'.repeat(5000) }]).subarray(0, 60), notArchive);
    await expectRefused(tgz([{ name: 'cut.txt', data: 'x', size: 10_000 }]), notArchive); // header lies
    await expectRefused(zlib.gzipSync(tgz([{ name: 'twice.txt', data: 'x' }])), /compressed twice/);
  });
});

/** A folder as node-tar packs it (what the CLI's packer builds on), entries relative to it. */
async function packWithTar(dir: string, keep: (relativePath: string) => boolean): Promise<Buffer> {
  const top = fs.readdirSync(dir).filter(keep).sort();
  const chunks: Buffer[] = [];
  for await (const chunk of createTar(
    { gzip: true, cwd: dir, portable: true, filter: (p) => keep(p.replace(/^\.\//, '')) },
    top,
  ))
    chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('extractTarGz of a folder packed with node-tar', () => {
  it('round-trips a project, with executable modes and symlinks inside it', async () => {
    const src = path.join(sandboxDir, 'src');
    fs.mkdirSync(path.join(src, 'bin'), { recursive: true });
    fs.mkdirSync(path.join(src, 'node_modules/dep'), { recursive: true });
    fs.mkdirSync(path.join(src, 'empty'));
    fs.writeFileSync(path.join(src, 'package.json'), '{"name":"x"}');
    fs.writeFileSync(path.join(src, 'bin/run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
    fs.writeFileSync(path.join(src, 'node_modules/dep/index.js'), '');
    fs.writeFileSync(path.join(src, 'ünïcode name.txt'), 'ü');
    fs.symlinkSync('../package.json', path.join(src, 'bin/package.json'));

    const archive = await packWithTar(src, (p) => !p.split('/').includes('node_modules'));
    await extractTarGz(archive, dest);
    expect(tree(dest)).toEqual([
      'bin/',
      'bin/package.json',
      'bin/run.sh',
      'empty/',
      'package.json',
      'ünïcode name.txt',
    ]);
    expect(fs.statSync(path.join(dest, 'bin/run.sh')).mode & 0o777).toBe(0o755);
    expect(fs.statSync(path.join(dest, 'package.json')).mode & 0o777).toBe(0o644);
    expect(fs.readlinkSync(path.join(dest, 'bin/package.json'))).toBe('../package.json');
    expect(fs.readFileSync(path.join(dest, 'ünïcode name.txt'), 'utf8')).toBe('ü');
    // No staging folder left behind.
    expect(fs.readdirSync(dest).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('accepts a stream, an archive made with ./ prefixes, and an empty archive', async () => {
    await extractTarGz(
      Readable.from([
        tgz([
          { name: './', type: '5' },
          { name: './app.js', data: 'ok' },
        ]),
      ]),
      dest,
    );
    expect(tree(dest)).toEqual(['app.js']);
    const empty = path.join(sandboxDir, 'empty-src');
    fs.mkdirSync(empty);
    await extractTarGz(
      zlib.gzipSync(Buffer.alloc(1024)) /* an empty tar */,
      path.join(sandboxDir, 'empty-dest'),
    );
    expect(tree(path.join(sandboxDir, 'empty-dest'))).toEqual([]);
  });

  it('keeps hard links between files of the archive, and drops setuid bits', async () => {
    await extractTarGz(
      tgz([
        { name: 'tool', data: '#!/bin/sh\n', mode: 0o4755 },
        { name: 'alias', type: '1', linkname: 'tool' },
      ]),
      dest,
    );
    expect(fs.statSync(path.join(dest, 'tool')).mode & 0o7777).toBe(0o755);
    expect(fs.statSync(path.join(dest, 'alias')).ino).toBe(fs.statSync(path.join(dest, 'tool')).ino);
  });

  it('wants an empty destination', async () => {
    fs.mkdirSync(dest, { recursive: true });
    fs.writeFileSync(path.join(dest, 'existing'), '');
    await expect(extractTarGz(tgz([{ name: 'a', data: '' }]), dest)).rejects.toThrow(/is not empty/);
  });
});
