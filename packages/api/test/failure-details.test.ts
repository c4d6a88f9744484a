import { describe, expect, it } from 'vitest';
import { meaningfulLines } from '../src/deployments/failure-details';

describe("a failed command's reason: the meaningful tail of its output", () => {
  it("pip: the 'No matching distribution' line, not the notices after it", () => {
    const output = [
      'Collecting Flask==3.1.2 (from -r requirements.txt (line 1))',
      'ERROR: Could not find a version that satisfies the requirement Flask==3.1.2 (from versions: none)',
      'ERROR: No matching distribution found for Flask==3.1.2',
      '',
      '[notice] A new release of pip is available: 24.0 -> 25.1',
      '[notice] To update, run: pip install --upgrade pip',
    ];
    expect(meaningfulLines(output)).toEqual([
      'ERROR: Could not find a version that satisfies the requirement Flask==3.1.2 (from versions: none)',
      'ERROR: No matching distribution found for Flask==3.1.2',
    ]);
  });

  it('npm: its error lines, past screens of engine warnings, without its bookkeeping', () => {
    const output = [
      ...Array.from({ length: 200 }, (_, i) => `npm warn EBADENGINE Unsupported engine { package: 'p${i}' }`),
      'npm error code ENOENT',
      'npm error syscall open',
      'npm error path /app/vendor/nope/package.json',
      'npm error errno -2',
      "npm error enoent Could not read package.json: Error: ENOENT: no such file or directory, open '/app/vendor/nope/package.json'",
      'npm error A complete log of this run can be found in: /root/.npm/_logs/2026-12-07T22_00_00_000Z-debug-0.log',
    ];
    expect(meaningfulLines(output)).toEqual([
      'npm error path /app/vendor/nope/package.json',
      "npm error enoent Could not read package.json: Error: ENOENT: no such file or directory, open '/app/vendor/nope/package.json'",
    ]);
  });

  it('an out-of-memory kill says so; with no error-like line, the last lines that are not noise; long lines cut', () => {
    expect(
      meaningfulLines([
        'added 12 packages',
        '[coderunner: out of memory (limit 256 MB): the process was killed]',
      ]),
    ).toEqual(['[coderunner: out of memory (limit 256 MB): the process was killed]']);
    expect(meaningfulLines(['one', 'WARNING: x', 'two', 'three'], 2)).toEqual(['two', 'three']);
    expect(meaningfulLines(['x'.repeat(1000)])[0]).toHaveLength(301);
    expect(meaningfulLines([])).toEqual([]);
  });
});
