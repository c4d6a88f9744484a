/**
 * The lean path of `deployments.logs` with `follow`: the same SSE stream tRPC's httpSubscriptionLink
 * reads (a `connected` event, then one tracked event per batch: `data: <superjson>` and `id: <last
 * line id>`, so a reconnecting EventSource resumes with Last-Event-ID), written without tRPC's
 * per-subscription machinery. Through tRPC each follower costs an async generator, a chain of web
 * streams (ReadableStream → TransformStream → TextEncoderStream → reader) and a JSON.stringify and
 * framing per batch: at 1,000 followers of one app that was most of the server's CPU. Here a live
 * batch is framed once into a Buffer that is written to every follower's response, and a follower
 * holds no task, timer or promise while it waits.
 *
 * Every check is the procedure's own (token, input, ownership, a server that runs deployments: see
 * `createLogsAccessCaller`); a request that fails one, or that this path does not take (no `follow`,
 * a batch call, a malformed input), goes on to the tRPC handler, which refuses it with the usual
 * error, or serves it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import superjson from 'superjson';
import type { Context } from './context';
import type { LogBatch, LogEnd } from './deployments/log-store';
import { unsentLines, watchFollowEnd } from './follow-end';
import { createLogsAccessCaller, logsInput } from './routers/deployments';
import { serializeOutput } from './trpc';

/** The headers of tRPC 11's SSE responses (sseHeaders in @trpc/server). */
const SSE_HEADERS = {
  'Content-Type': 'text/event-stream',
  'Cache-Control': 'no-cache, no-transform',
  'X-Accel-Buffering': 'no',
  Connection: 'keep-alive',
} as const;
/** What tRPC's sseStreamProducer sends first (`client` options: none). */
const CONNECTED = Buffer.from('event: connected\ndata: {}\n\n\n');
const PATH = '/deployments.logs';

interface Frame {
  /** The SSE event. */
  event: Buffer;
  /** The same as one chunk of a chunked HTTP/1.1 body: written to the socket as it is. */
  chunk: Buffer;
}

const CRLF = Buffer.from('\r\n');

/** The frame of each batch handed to several followers, built once. */
const frames = new WeakMap<LogBatch, Frame>();
function frame(batch: LogBatch, id = batch.lines.at(-1)!.id): Frame {
  let out = frames.get(batch);
  if (!out) {
    // As sseStreamProducer frames a tracked event; the id is a number, never a newline.
    const data = JSON.stringify(serializeOutput(batch));
    out = framed(Buffer.from(`data: ${data}\nid: ${id}\n\n\n`));
    frames.set(batch, out);
  }
  return out;
}
function framed(event: Buffer): Frame {
  return { event, chunk: Buffer.concat([Buffer.from(`${event.length.toString(16)}\r\n`), event, CRLF]) };
}
/** What sseStreamProducer sends when the procedure's generator returns: the client completes. */
const RETURN = framed(Buffer.from('event: return\ndata: \n\n\n'));

/** The input tRPC would hand the procedure (a GET's `input`, with Last-Event-ID merged in as tRPC does), or null. */
function parseInput(req: IncomingMessage, url: URL): unknown {
  const raw = url.searchParams.get('input');
  let input: unknown;
  try {
    input = raw === null ? undefined : superjson.deserialize(JSON.parse(raw));
  } catch {
    return null;
  }
  const header = req.headers['last-event-id'];
  const lastEventId =
    (Array.isArray(header) ? header[0] : header) ??
    url.searchParams.get('lastEventId') ??
    url.searchParams.get('Last-Event-Id');
  if (lastEventId) {
    if (input && typeof input === 'object' && !Array.isArray(input)) input = { ...input, lastEventId };
    else input ??= { lastEventId };
  }
  return input;
}

/**
 * Express-style handler for the tRPC endpoint's requests (`req.url` relative to it, as under
 * `app.use('/trpc', …)`): takes `GET /deployments.logs` with `follow: true`, passes anything else
 * to `next`.
 */
export function createLogFollowHandler(opts: {
  createContext: (req: IncomingMessage, res: ServerResponse) => Context;
}): (req: IncomingMessage, res: ServerResponse, next: () => void) => void {
  return (req, res, next) => {
    if (req.method !== 'GET' || !req.url?.startsWith(PATH)) {
      next();
      return;
    }
    const url = new URL(req.url, 'http://localhost');
    if (url.pathname !== PATH || url.searchParams.has('batch')) {
      next();
      return;
    }
    const parsed = logsInput.safeParse(parseInput(req, url));
    if (!parsed.success || !parsed.data.follow) {
      next();
      return;
    }
    const input = parsed.data;
    const ctx = opts.createContext(req, res);
    createLogsAccessCaller(ctx)
      .open(input)
      .then(
        (deploymentId) => {
          if (res.destroyed || req.destroyed) return;
          stream(ctx, deploymentId, input, res);
        },
        // Refused (or failed): tRPC runs the same checks and answers as it always does.
        () => next(),
      );
  };
}

function stream(
  ctx: Context,
  deploymentId: string,
  input: { tail?: number | undefined; lastEventId?: string | null | undefined },
  res: ServerResponse,
): void {
  const logs = ctx.deps.deployments!.logs;
  res.writeHead(200, SSE_HEADERS);
  res.write(CONNECTED); // the headers and the first chunk, ahead of anything below on the socket
  const socket = res.socket;
  // A chunked body on its own connection (the usual case): each batch goes to the socket as one
  // prepared chunk, one write of a shared Buffer, without the response's per-write framing. The
  // socket ends with the response (the client leaving, or the server closing), so nothing else is
  // ever written on it after these chunks.
  const raw = socket !== null && (res as { chunkedEncoding?: boolean }).chunkedEncoding === true;
  const target: NodeJS.EventEmitter = raw ? socket : res;
  const write = raw ? (f: Frame) => socket.write(f.chunk) : (f: Frame) => res.write(f.event);
  let last = input.lastEventId ? Number(input.lastEventId) : null;
  const send = (batch: LogBatch) => {
    last = batch.lines.at(-1)!.id;
    return write(frame(batch));
  };
  // A backed-up connection: the store holds its batches (bounded) until 'drain'.
  const subscription = logs.subscribe(deploymentId, last, { send }, { tail: input.tail });
  const onDrain = () => subscription.resume();
  target.on('drain', onDrain);
  // The deployment writes no more: what it wrote last, then why the follow ends, then tRPC's return.
  const end = async (why: LogEnd) => {
    subscription.close();
    target.off('drain', onDrain);
    for (const page of await unsentLines(logs, deploymentId, last, input.tail)) {
      if (res.destroyed) return;
      send(page);
    }
    if (res.destroyed) return;
    write(frame({ lines: [], end: why }, last ?? 0));
    write(RETURN);
    res.end();
  };
  const stopWatching = watchFollowEnd(ctx, deploymentId, (why) => {
    end(why).catch(() => res.destroy());
  });
  res.once('close', () => {
    stopWatching();
    target.off('drain', onDrain);
    subscription.close();
  });
}
