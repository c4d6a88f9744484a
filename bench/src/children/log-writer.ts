/**
 * Stands for a worker-only replica running apps, for `pnpm bench logs`: appends `tick <epoch ms> <seq>`
 * 10 times a second to each deployment's log in the shared data folder, through the product's LogStore.
 *
 * env: LOG_DIR (<data dir>/logs), DEPLOYMENTS (comma-separated ids). Prints `ready`; stops on SIGTERM.
 */
import { LogStore } from '@coderunner/api';

const store = new LogStore(process.env.LOG_DIR!);
const ids = process.env.DEPLOYMENTS!.split(',');
// Spread over the 100 ms so that the deployments do not all write in the same instant.
const timers = ids.map((id, i) =>
  setTimeout(
    () => {
      let n = 0;
      timers[i] = setInterval(() => store.append(id, 'app', 'stdout', `tick ${Date.now()} ${n++}`), 100);
    },
    Math.floor((i * 100) / ids.length),
  ),
);
console.log('ready');

process.on('SIGTERM', () => {
  for (const t of timers) clearTimeout(t);
  void store.close().then(() => process.exit(0));
});
