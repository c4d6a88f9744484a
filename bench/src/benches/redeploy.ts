/**
 * The redeploy switch, part of `pnpm bench deploy`: 20 redeploys of one project while clients
 * request its project URL back to back. For each: the time from the new deployment becoming RUNNING
 * (the engine's "running at" log line, written right after the status change) to the first response
 * from the new version through the project URL; and every failed request (not 200, or no answer).
 */
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { CodeRunnerClient } from '@coderunner/api/client';
import { packFolder } from '@coderunner/api/pack';
import { sleep } from '../lib/scope';
import { median, ms, percentile } from '../lib/stats';

export const REDEPLOYS = 20;
/** Clients requesting the project URL back to back, each on a keep-alive connection. */
const CLIENTS = 4;

/** A dependency-free app answering its version on every path. */
function versionApp(dir: string, version: string): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'package.json'),
    JSON.stringify({ name: 'versioned', private: true, scripts: { start: 'node server.js' } }),
  );
  fs.writeFileSync(
    path.join(dir, 'server.js'),
    `require('http').createServer((q, s) => s.end(${JSON.stringify(version)})).listen(process.env.PORT, '127.0.0.1');\n`,
  );
  return dir;
}

function get(agent: http.Agent, url: URL): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.get(
      { host: '127.0.0.1', port: url.port, path: '/', headers: { host: url.host }, agent },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', () => resolve({ status: 0, body: '' }));
      },
    );
    req.setTimeout(10_000, () => req.destroy());
    req.on('error', () => resolve({ status: 0, body: '' }));
  });
}

export interface RedeployResult {
  requests: number;
  failed: number;
  failures: string[];
  /** Per redeploy: ms from RUNNING (its log stamp) to the first response of the new version. */
  switches: number[];
  /** Responses of an older version after the new one was first seen (a switch back). */
  wentBack: number;
}

export async function measureRedeploys(opts: {
  api: CodeRunnerClient;
  projectId: string;
  workDir: string;
  dataDir: string;
  /** Resolves when the deployment is RUNNING (throws when it FAILED). */
  waitRunning: (id: string) => Promise<number>;
  log: (line: string) => void;
}): Promise<RedeployResult> {
  const { api, projectId, log } = opts;
  const archives: Uint8Array[] = [];
  for (let i = 0; i <= REDEPLOYS; i++)
    archives.push((await packFolder(versionApp(path.join(opts.workDir, `v${i}`), `v${i}`))).archive);
  const deploy = async (i: number) => {
    const f = new FormData();
    f.set('projectId', projectId);
    f.set('source', new Blob([archives[i]!]), 'source.tar.gz');
    const { id } = await api.deployments.create.mutate(f);
    await opts.waitRunning(id);
    return id;
  };
  await deploy(0);
  const projectUrl = new URL((await api.projects.get.query({ id: projectId })).url!);

  const result: RedeployResult = { requests: 0, failed: 0, failures: [], switches: [], wentBack: 0 };
  const firstSeen = new Map<number, number>();
  let running = true;
  const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
  const clients = Array.from({ length: CLIENTS }, async () => {
    while (running) {
      const sentAt = Date.now();
      const r = await get(agent, projectUrl);
      result.requests++;
      const version = /^v(\d+)$/.exec(r.body)?.[1];
      if (r.status !== 200 || version === undefined) {
        result.failed++;
        if (result.failures.length < 5) result.failures.push(`${r.status} ${r.body.slice(0, 80)}`);
        continue;
      }
      const v = Number(version);
      // Sent after a newer version had already answered someone: the URL switched back.
      if ([...firstSeen].some(([w, at]) => w > v && at < sentAt)) result.wentBack++;
      if (!firstSeen.has(v)) firstSeen.set(v, Date.now());
    }
  });

  try {
    for (let i = 1; i <= REDEPLOYS; i++) {
      const id = await deploy(i);
      const deadline = Date.now() + 10_000;
      while (!firstSeen.has(i) && Date.now() < deadline) await sleep(2);
      const runningAt = runningStamp(path.join(opts.dataDir, 'logs', id));
      const seen = firstSeen.get(i);
      if (seen === undefined || runningAt === null)
        throw new Error(`redeploy ${i}: the project URL never served v${i}`);
      result.switches.push(seen - runningAt);
      log(`redeploy ${i}/${REDEPLOYS}: the project URL served v${i} ${ms(seen - runningAt)} after RUNNING`);
    }
  } finally {
    running = false;
    await Promise.all(clients);
    agent.destroy();
  }
  return result;
}

/** The epoch ms of the deployment's "running at" log line (the log's stored segments). */
function runningStamp(logFolder: string): number | null {
  for (const file of fs
    .readdirSync(logFolder)
    .sort((a, b) => Number.parseInt(a, 10) - Number.parseInt(b, 10))) {
    for (const raw of fs.readFileSync(path.join(logFolder, file), 'utf8').split('\n')) {
      if (!raw) continue;
      const line = JSON.parse(raw) as { t: number; m: string; s: string };
      if (line.s === 'system' && line.m.startsWith('running at ')) return line.t;
    }
  }
  return null;
}

export function redeployLine(r: RedeployResult): string {
  return (
    `redeploy: ${REDEPLOYS} redeploys while ${CLIENTS} clients requested the project URL back to back: ` +
    `${r.requests.toLocaleString('en-US')} requests, ${r.failed} failed, ${r.wentBack} from an older version after the switch; ` +
    `switch (RUNNING → the project URL serves it) median ${ms(median(r.switches))}, p90 ${ms(percentile(r.switches, 90))}, max ${ms(Math.max(...r.switches))}`
  );
}

export function redeployDetails(r: RedeployResult): string[] {
  return [
    '',
    `**Redeploy switch**: one project, ${REDEPLOYS} redeploys one after the other (each a new version of a dependency-free app answering \`v<n>\`), while ${CLIENTS} clients requested the project URL back to back on keep-alive connections through the server's proxy. Switch = first response from the new version − the "running at" log stamp the engine writes right after the status change (negative: a request looked the project up between the status change and that line). Goal: 0 failed, switch < 100 ms.`,
    '',
    `| requests | failed | older version after the switch | switch median | p90 | max |`,
    '| --- | --- | --- | --- | --- | --- |',
    `| ${r.requests.toLocaleString('en-US')} | ${r.failed} | ${r.wentBack} | ${ms(median(r.switches))} | ${ms(percentile(r.switches, 90))} | ${ms(Math.max(...r.switches))} |`,
    ...(r.failures.length ? ['', `First failures: ${r.failures.map((f) => `\`${f}\``).join(', ')}`] : []),
  ];
}
