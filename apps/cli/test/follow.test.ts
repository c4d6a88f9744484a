/**
 * The stream logic under failures that a real server does not produce on demand: a server that is
 * down from the start, an event source that gives up, lines sent again after a reconnection.
 */

import type { CodeRunnerClient } from '@coderunner/api/client';
import { TRPCClientError } from '@trpc/client';
import { describe, expect, it } from 'vitest';
import { CliError } from '../src/errors';
import { streamLogs } from '../src/follow';
import type { LogBatch, LogLine } from '../src/views';

type Callbacks = {
  onStarted: () => void;
  onData: (d: { id: string; data: LogBatch }) => void;
  onError: (e: unknown) => void;
  onComplete: () => void;
  onConnectionStateChange: (s: { state: string; error: unknown }) => void;
};

/** A client whose deployments.logs.subscribe runs `script` for each subscription, with its input. */
function fakeClient(script: (input: Record<string, unknown>, cb: Callbacks, attempt: number) => void) {
  const inputs: Record<string, unknown>[] = [];
  const client = {
    deployments: {
      logs: {
        subscribe(input: Record<string, unknown>, cb: Callbacks) {
          inputs.push(input);
          setImmediate(() => script(input, cb, inputs.length));
          return { unsubscribe() {} };
        },
      },
    },
  } as unknown as CodeRunnerClient;
  return { client, inputs };
}

const logLine = (id: number): LogLine => ({
  id,
  time: new Date(),
  source: 'app',
  stream: 'stdout',
  text: `line ${id}`,
});
/** One event of deployments.logs: a batch of lines, its id the last line's. */
const batch = (ids: number[], missed?: number): { id: string; data: LogBatch } => ({
  id: String(ids.at(-1)),
  data: { lines: ids.map(logLine), ...(missed ? { missed } : {}) },
});
const line = (id: number) => batch([id]);

describe('streamLogs', () => {
  it('a server down from the start is "cannot reach" (exit 4) at once, follow or not', async () => {
    for (const follow of [false, true]) {
      const { client } = fakeClient((_input, cb) =>
        cb.onConnectionStateChange({ state: 'connecting', error: new Error('fetch failed') }),
      );
      const err = await streamLogs(client, { id: 'd', follow, apiUrl: 'http://x', onLine: () => {} }).catch(
        (e) => e,
      );
      expect(err).toBeInstanceOf(CliError);
      expect(err.exitCode).toBe(4);
      expect(err.message).toBe('cannot reach http://x — is the server running? (fetch failed)');
    }
  });

  it('history only: a connection lost midway is an error, never a wait', async () => {
    const { client } = fakeClient((_input, cb) => {
      cb.onStarted();
      cb.onData(line(1));
      cb.onConnectionStateChange({ state: 'connecting', error: new Error('socket hang up') });
    });
    const seen: number[] = [];
    const err = await streamLogs(client, {
      id: 'd',
      follow: false,
      apiUrl: 'http://x',
      onLine: (l) => seen.push(l.id),
    }).catch((e) => e);
    expect(err.exitCode).toBe(4);
    expect(seen).toEqual([1]);
  });

  it('follow: when the event source gives up, it subscribes again after the last line; repeats are dropped', async () => {
    const { client, inputs } = fakeClient((_input, cb, attempt) => {
      cb.onStarted();
      if (attempt === 1) {
        for (const id of [1, 2, 3]) cb.onData(line(id));
        cb.onError(new Error('Non-200 status code (502)')); // no tRPC code: the connection, not the server
      } else {
        for (const id of [2, 3, 4, 5]) cb.onData(line(id)); // a server that sends some again
        cb.onComplete();
      }
    });
    const seen: number[] = [];
    const states: string[] = [];
    const last = await streamLogs(client, {
      id: 'd',
      follow: true,
      tail: 10,
      apiUrl: 'http://x',
      retryMs: 10,
      onLine: (l) => seen.push(l.id),
      onConnection: (s) => states.push(s),
    });
    expect(seen).toEqual([1, 2, 3, 4, 5]);
    expect(last).toBe(5);
    expect(states).toEqual(['lost', 'back']);
    expect(inputs).toEqual([
      { id: 'd', follow: true, tail: 10 },
      { id: 'd', follow: true, lastEventId: '3' }, // resumes after the last line: no tail then
    ]);
  });

  it('hands on each batch line by line, resumes after the last batch, and reports what the server skipped', async () => {
    const { client, inputs } = fakeClient((_input, cb, attempt) => {
      cb.onStarted();
      if (attempt === 1) {
        cb.onData(batch([1, 2, 3]));
        cb.onData(batch([10, 11], 6)); // a slow reader: the server skipped 4..9
        cb.onError(new Error('socket hang up'));
      } else {
        cb.onData(batch([11, 12, 13])); // 11 again after the reconnection: dropped
        cb.onComplete();
      }
    });
    const seen: number[] = [];
    const missed: number[] = [];
    const last = await streamLogs(client, {
      id: 'd',
      follow: true,
      apiUrl: 'http://x',
      retryMs: 10,
      onLine: (l) => seen.push(l.id),
      onMissed: (n) => missed.push(n),
    });
    expect(seen).toEqual([1, 2, 3, 10, 11, 12, 13]);
    expect(missed).toEqual([6]);
    expect(last).toBe(13);
    expect(inputs[1]).toEqual({ id: 'd', follow: true, lastEventId: '11' });
  });

  it("the server's refusal (NOT_FOUND, UNAUTHORIZED) ends a follow with that error", async () => {
    const err = Object.assign(new TRPCClientError('deployment not found'), { data: { code: 'NOT_FOUND' } });
    const { client, inputs } = fakeClient((_input, cb) => {
      cb.onStarted();
      cb.onError(err);
    });
    const result = await streamLogs(client, {
      id: 'd',
      follow: true,
      apiUrl: 'http://x',
      onLine: () => {},
    }).catch((e) => e);
    expect(result).toBe(err);
    expect(inputs).toHaveLength(1);
  });

  it('an abort (Ctrl-C) ends a follow quietly', async () => {
    const abort = new AbortController();
    const { client } = fakeClient((_input, cb) => {
      cb.onStarted();
      cb.onData(line(7));
      setTimeout(() => abort.abort(), 20);
    });
    expect(
      await streamLogs(client, {
        id: 'd',
        follow: true,
        apiUrl: 'http://x',
        signal: abort.signal,
        onLine: () => {},
      }),
    ).toBe(7);
  });
});
