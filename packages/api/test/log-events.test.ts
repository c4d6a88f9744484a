/**
 * Code reads a system line's typed event, never its wording: the wording is for people and may
 * change. A grep over the readers (the CLI and the reconciler) keeps it so.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseLogEvent } from '../src/deployments/log-events';

const ROOT = path.resolve(import.meta.dirname, '../../..');

function sources(dir: string): string[] {
  return fs
    .readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => /\.tsx?$/.test(f))
    .map((f) => path.join(dir, f));
}

describe('typed log events', () => {
  it('the CLI and the reconciler hold no log wording for running, failed or retries, and match no line text', () => {
    const readers = [
      ...sources(path.join(ROOT, 'apps/cli/src')),
      path.join(ROOT, 'packages/api/src/deployments/reconciler.ts'),
    ];
    expect(readers.length).toBeGreaterThan(10);
    const found: string[] = [];
    for (const file of readers) {
      const text = fs.readFileSync(file, 'utf8');
      for (const [what, re] of [
        ['"running at"', /running at /],
        ['"FAILED: "', /['"`]FAILED: /],
        ['a retry regex', /retry \(\\d/],
        [
          "a match on a line's text",
          /\.text\.(startsWith|endsWith|includes|match)\(|\.(exec|test)\(\w+\.text\)/,
        ],
      ] as const)
        if (re.test(text)) found.push(`${path.relative(ROOT, file)}: ${what}`);
    }
    expect(found).toEqual([]);
  });

  it('reads the kinds it knows, whole; anything else (absent, unknown, malformed) is no event', () => {
    expect(parseLogEvent({ type: 'running', url: 'http://x/' })).toEqual({
      type: 'running',
      url: 'http://x/',
    });
    expect(parseLogEvent({ type: 'retry', n: 2, of: 3, extra: 1 })).toEqual({ type: 'retry', n: 2, of: 3 });
    expect(parseLogEvent({ type: 'failed', reason: 'r' })).toEqual({ type: 'failed', reason: 'r' });
    expect(parseLogEvent({ type: 'queued' })).toEqual({ type: 'queued' });
    expect(parseLogEvent({ type: 'stopped' })).toEqual({ type: 'stopped' });
    for (const bad of [
      undefined,
      null,
      'running',
      { type: 'restart' },
      { type: 'running' },
      { type: 'retry', n: '1', of: 2 },
      { type: 'failed' },
    ])
      expect(parseLogEvent(bad)).toBeUndefined();
  });
});
