/** What `coderunner deploy` uploads: the folder as git would commit it, in a tar.gz the server accepts. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { listEntries, packFolder } from '../src/pack';

const tempDirs: string[] = [];
function tempDir(prefix = 'coderunner-pack-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function appFolder(files: Record<string, string>): string {
  const dir = tempDir('coderunner-pack-app-');
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), content);
  }
  return dir;
}

const files = (dir: string) => listEntries(dir).entries.filter((e) => !e.endsWith('/'));

/** Unpacks with the system's tar (another implementation than the one that packed). */
function extract(archive: Buffer): string {
  const out = tempDir();
  execFileSync('tar', ['-xzf', '-', '-C', out], { input: archive });
  return out;
}

/** A project with ignore rules at several levels (no .coderunnerignore: git knows nothing of it). */
const PROJECT = {
  'package.json': '{}',
  'server.js': '',
  '.gitignore': 'secret.txt\n*.log\nbuild/\n/top-only.txt\nvendor/\n# a comment\n\n',
  'secret.txt': 'x',
  'top-only.txt': 'x',
  'app.log': 'x',
  'build/out.js': 'x',
  'src/index.js': 'x',
  'src/top-only.txt': 'kept: the rule is anchored at the top',
  'src/secret.txt': 'x',
  'src/debug.log': 'x',
  'src/.gitignore': '!keep.log\ngenerated/\n',
  'src/keep.log': 'brought back by the nested .gitignore',
  'src/generated/a.js': 'x',
  'src/lib/.gitignore': '*.tmp\n',
  'src/lib/util.js': 'x',
  'src/lib/cache.tmp': 'x',
  'docs/build/index.html': 'a build/ folder anywhere is ignored',
  'docs/readme.md': 'x',
  'lib/.gitignore': '!build/\n/only-here.txt\n**/deep.txt\n\\#hash.txt\n',
  'lib/build/gen.js': 'brought back: a deeper file overrides the top one',
  'lib/only-here.txt': 'x',
  'lib/sub/only-here.txt': 'kept: anchored to lib/',
  'lib/sub/deep.txt': 'x',
  'lib/#hash.txt': 'x',
  'vendor/.gitignore': '!keep.js\n',
  'vendor/keep.js': 'not brought back: its folder is ignored',
};

describe('the files deploy packs', () => {
  it('follows .gitignore files at every level exactly as git does (compared with git ls-files)', () => {
    const dir = appFolder(PROJECT);
    const ours = files(dir).sort();
    expect(ours).toEqual(
      [
        '.gitignore',
        'docs/readme.md',
        'lib/.gitignore',
        'lib/build/gen.js',
        'lib/sub/only-here.txt',
        'package.json',
        'server.js',
        'src/.gitignore',
        'src/index.js',
        'src/keep.log',
        'src/lib/.gitignore',
        'src/lib/util.js',
        'src/top-only.txt',
      ].sort(),
    );
    // The same folder as a git repository: git's own answer is the same list.
    execFileSync('git', ['init', '-q', dir]);
    const git = execFileSync('git', ['-C', dir, 'ls-files', '--cached', '--others', '--exclude-standard'], {
      encoding: 'utf8',
    })
      .split('\n')
      .filter(Boolean)
      .sort();
    expect(ours).toEqual(git);
    expect(listEntries(dir).entries.some((e) => e.startsWith('.git/'))).toBe(false);
  });

  it('never node_modules or .git, whatever the rules say; .venv and __pycache__ unless brought back', () => {
    const dir = appFolder({
      'index.js': 'x',
      'node_modules/dep/index.js': 'x',
      'packages/a/node_modules/dep/index.js': 'x',
      '.git/HEAD': 'x',
      '.venv/bin/python': 'x',
      'pkg/__pycache__/m.pyc': 'x',
      '.gitignore': '!node_modules/\n!.git/\n',
    });
    expect(files(dir).sort()).toEqual(['.gitignore', 'index.js']);
    fs.writeFileSync(path.join(dir, '.coderunnerignore'), '!.venv/\n');
    expect(files(dir).sort()).toEqual(['.coderunnerignore', '.gitignore', '.venv/bin/python', 'index.js']);
  });

  it('.coderunnerignore adds rules (nested too) and can bring back what .gitignore leaves out', () => {
    const dir = appFolder({
      'index.js': 'x',
      '.gitignore': 'dist/\n',
      'dist/bundle.js': 'x',
      '.coderunnerignore': '!dist/\ntests/\n*.md\n',
      'tests/a.test.js': 'x',
      'README.md': 'x',
      'sub/.coderunnerignore': 'fixtures/\n',
      'sub/fixtures/big.bin': 'x',
      'sub/code.js': 'x',
    });
    expect(files(dir).sort()).toEqual(
      [
        '.coderunnerignore',
        '.gitignore',
        'dist/bundle.js',
        'index.js',
        'sub/.coderunnerignore',
        'sub/code.js',
      ].sort(),
    );
  });

  it('packs a tar.gz: contents, modes, empty folders and symbolic links kept', async () => {
    const dir = appFolder({
      'run.sh': '#!/bin/sh\necho hi\n',
      'data/a.txt': 'hello',
      '.gitignore': 'x.txt\n',
      'x.txt': 'no',
    });
    fs.chmodSync(path.join(dir, 'run.sh'), 0o755);
    fs.symlinkSync('data/a.txt', path.join(dir, 'link.txt'));
    fs.mkdirSync(path.join(dir, 'empty'));
    const packed = await packFolder(dir);
    expect(packed.files).toBe(4); // run.sh, data/a.txt, .gitignore, link.txt
    expect(packed.bytes).toBe(fs.statSync(path.join(dir, 'run.sh')).size + 5 + 6);
    expect(packed.archive.subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    const out = extract(packed.archive);
    expect(fs.readFileSync(path.join(out, 'data/a.txt'), 'utf8')).toBe('hello');
    expect(fs.statSync(path.join(out, 'run.sh')).mode & 0o100).toBe(0o100);
    expect(fs.readlinkSync(path.join(out, 'link.txt'))).toBe('data/a.txt');
    expect(fs.statSync(path.join(out, 'empty')).isDirectory()).toBe(true);
    expect(fs.existsSync(path.join(out, 'x.txt'))).toBe(false);
  });

  it('an empty folder packs to an empty archive', async () => {
    const packed = await packFolder(tempDir());
    expect(packed.files).toBe(0);
    expect(fs.readdirSync(extract(packed.archive))).toEqual([]);
  });
});
