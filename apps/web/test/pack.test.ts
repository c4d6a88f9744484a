/**
 * The browser packer selects exactly what the CLI's packer selects from the same folder (one set of
 * upload rules), and its archive unpacks to those files.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { listEntries } from '@coderunner/api/pack';
import { parseTar } from 'nanotar';
import { describe, expect, it } from 'vitest';
import { type PickedFile, packFiles, selectEntries } from '../src/pack';

const FILES: Record<string, string> = {
  'package.json': '{"scripts":{"start":"node server.js"}}',
  'server.js': 'console.log(1)',
  '.gitignore': 'secret.txt\nbuild/\n*.log\n!keep.log\n',
  '.coderunnerignore': 'notes.md\n!build/\n',
  'secret.txt': 'no',
  'notes.md': 'no',
  'build/out.js': 'yes: brought back by .coderunnerignore',
  'debug.log': 'no',
  'keep.log': 'yes',
  'src/.gitignore': 'local.js\n/only-here.js\n',
  'src/local.js': 'no',
  'src/only-here.js': 'no',
  'src/deep/only-here.js': 'yes: anchored rule applies to src/ only',
  'src/deep/local.js': 'no: unanchored rule applies at any depth below src/',
  'src/app.js': 'yes',
  'node_modules/x/index.js': 'never',
  'src/node_modules/y.js': 'never',
  '.git/HEAD': 'never',
  '__pycache__/a.pyc': 'no by default',
  '.venv/bin/python': 'no by default',
};

function onDisk(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-web-pack-'));
  for (const [name, content] of Object.entries(FILES)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), content);
  }
  return dir;
}

const picked = (): PickedFile[] =>
  Object.entries(FILES).map(([p, content]) => ({ path: p, file: new File([content], path.basename(p)) }));

describe('packing in the browser', () => {
  it('selects the same entries as the CLI, in the same order', async () => {
    const dir = onDisk();
    try {
      const browser = (await selectEntries(picked())).map((e) => e.path);
      expect(browser).toEqual(listEntries(dir).entries);
      expect(browser).toContain('build/out.js');
      expect(browser).toContain('src/deep/only-here.js');
      expect(
        browser.filter((p) => /secret|notes|debug|node_modules|\.git\/|pycache|\.venv|local\.js/.test(p)),
      ).toEqual([]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('produces a gzipped tar holding those files with their contents', async () => {
    const packed = await packFiles(picked());
    const entries = parseTar(gunzipSync(new Uint8Array(await packed.archive.arrayBuffer())));
    const files = Object.fromEntries(entries.filter((e) => e.type === 'file').map((e) => [e.name, e.text]));
    expect(files['server.js']).toBe('console.log(1)');
    expect(files['build/out.js']).toBe(FILES['build/out.js']);
    expect(Object.keys(files)).not.toContain('secret.txt');
    expect(packed.files).toBe(Object.keys(files).length);
  });

  it('refuses a path too long for the tar header instead of truncating it', async () => {
    const long = `${'a'.repeat(60)}/${'b'.repeat(60)}.js`;
    await expect(packFiles([{ path: long, file: new File(['x'], 'b.js') }])).rejects.toThrow(/too long/);
  });
});
