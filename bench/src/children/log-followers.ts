/**
 * Followers of deployments.logs through the typed client (SSE), for `pnpm bench logs`.
 *
 * env: API_URL (…/trpc), TOKEN, DEPLOYMENTS (comma-separated ids), PER_DEPLOYMENT (followers each),
 * MODE=watch for deployments.watch subscriptions instead.
 * Lines are `tick <epoch ms> <seq>` (the app or writer stamps them). Prints `{"ready":n}` once every

 * follower has its first batch (connecting 10 per 100 ms; a failed subscription is retried after 1 s
 * from its last event id); on stdin `start` it begins recording (lag = now − stamp; lines lost =
 * gaps in seq per follower; `missed` the server reported), on `stop` it prints `{"report":…}` and exits.
 */
import readline from 'node:readline';
import { createClient } from '@coderunner/api/client';

const url = process.env.API_URL!;
const token = process.env.TOKEN!;
const ids = process.env.DEPLOYMENTS!.split(',');
const per = Number(process.env.PER_DEPLOYMENT);
/** `watch`: deployments.watch subscriptions (status) instead of logs; they count as started with their first state. */
const mode = process.env.MODE === 'watch' ? 'watch' : 'logs';
const CONNECT_CHUNK = 10;

interface Follower {
  started: boolean;
  lastSeq: number | null;
  lost: number;
  missed: number;
  received: number;
}

const followers: Follower[] = [];
const lags: number[] = [];
let recording = false;
let errors = 0;
let ready = 0;
const subs = new Set<{ unsubscribe(): void }>();

function follow(id: string): void {
  const client = createClient({ url, token });
  const f: Follower = { started: false, lastSeq: null, lost: 0, missed: 0, received: 0 };
  followers.push(f);
  let lastEventId: string | null = null;
  if (mode === 'watch') {
    const watch = () => {
      const sub = client.deployments.watch.subscribe(
        { id },
        {
          onData: () => {
            if (f.started) return;
            f.started = true;
            if (++ready === ids.length * per) console.log(JSON.stringify({ ready }));
          },
          onError: () => {
            errors++;
            subs.delete(sub);
            setTimeout(watch, 1_000);
          },
        },
      );
      subs.add(sub);
    };
    watch();
    return;
  }
  const subscribe = () => {
    const sub = client.deployments.logs.subscribe(
      { id, follow: true, ...(lastEventId ? { lastEventId } : { tail: 1 }) },
      {
        onData: ({ id: eventId, data }) => {
          lastEventId = eventId;
          if (!f.started) {
            f.started = true;
            if (++ready === ids.length * per) console.log(JSON.stringify({ ready }));
          }
          const now = Date.now();
          if (recording) f.missed += data.missed ?? 0;
          for (const line of data.lines) {
            const m = /^tick (\d+) (\d+)$/.exec(line.text);
            if (!m) continue;
            const seq = Number(m[2]);
            if (recording) {
              lags.push(now - Number(m[1]));
              f.received++;
              if (f.lastSeq !== null && seq > f.lastSeq + 1) f.lost += seq - f.lastSeq - 1;
            }
            f.lastSeq = seq;
          }
        },
        onError: () => {
          // As the CLI does: subscribe again after a second, resuming after the last event.
          errors++;
          subs.delete(sub);
          setTimeout(subscribe, 1_000);
        },
      },
    );
    subs.add(sub);
  };
  subscribe();
}

for (let n = 0; n < ids.length * per; ) {
  for (let k = 0; k < CONNECT_CHUNK && n < ids.length * per; k++, n++) follow(ids[n % ids.length]!);
  await new Promise((r) => setTimeout(r, 100));
}

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (command) => {
  if (command === 'start') {
    recording = true;
  } else if (command === 'stop') {
    recording = false;
    const report = {
      followers: followers.length,
      started: followers.filter((f) => f.started).length,
      lags,
      received: followers.reduce((s, f) => s + f.received, 0),
      lost: followers.map((f) => f.lost),
      missed: followers.reduce((s, f) => s + f.missed, 0),
      errors,
    };
    for (const sub of subs) sub.unsubscribe();
    process.stdout.write(`${JSON.stringify({ report })}\n`, () => process.exit(0));
  }
});
