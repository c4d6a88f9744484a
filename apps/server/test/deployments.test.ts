import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { CodeRunnerClient } from '@coderunner/api/client';
import type { TestDatabase } from '@coderunner/db/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningServer } from '../src/server';
import {
  appFolder,
  curl,
  type DeployingServer,
  deployFolder,
  logText,
  processesOfSandbox,
  startDeployingServer,
  uploadForm,
  waitForStatus,
} from './fixtures/deploy-helpers';

const SECRET_MARKER = 'server-secret-must-not-leak';
let ctx: DeployingServer;
let db: TestDatabase;
let server: RunningServer;
let dataDir: string;
let client: CodeRunnerClient;
let projectId: string;

beforeAll(async () => {
  process.env.CODERUNNER_TEST_MARKER = SECRET_MARKER; // a server-side secret user code must not see
  ctx = await startDeployingServer(
    {
      CODERUNNER_AUTH_SECRET: SECRET_MARKER.repeat(2),
      CODERUNNER_START_TIMEOUT_S: '5',
      CODERUNNER_MAX_UPLOAD_MB: '1',
    },
    { email: 'deployer@example.com', project: 'apps' },
  );
  ({ db, server, dataDir, client, projectId } = ctx);
});

afterAll(() => ctx?.close());

const NODE_APP = {
  'package.json': JSON.stringify({
    name: 'hello',
    dependencies: { 'is-number': '7.0.0' },
    scripts: { start: 'node server.js' },
  }),
  'server.js': `const isNumber = require('is-number');
require('http').createServer((req, res) => {
  if (req.url === '/env') return res.end(JSON.stringify(process.env));
  res.end('hello from node ' + isNumber(42) + ' host=' + req.headers.host);
}).listen(process.env.PORT, '127.0.0.1', () => console.log('listening on ' + process.env.PORT));`,
};

describe('deploying through the API, end to end on the local provider', () => {
  it('a Node app with an npm dependency: RUNNING, its URL serves it, stop/start/destroy', async () => {
    const created = await deployFolder(client, projectId, appFolder(NODE_APP));
    expect(created.status).toBe('PENDING');
    expect(created.runtimeType).toBe('nodejs');
    const running = await waitForStatus(client, created.id, ['RUNNING', 'FAILED']);
    expect(running.status, await logText(client, created.id)).toBe('RUNNING');
    expect(running.publicUrl).toMatch(new RegExp(`^http://${created.id}\\.localhost:${server.port}/$`));
    const page = await curl(running.publicUrl!);
    expect(page.body).toBe(`hello from node true host=${created.id}.localhost:${server.port}`);

    // User code sees none of the server's environment.
    const env = JSON.parse((await curl(`${running.publicUrl}env`)).body);
    expect(env.PORT).toBeDefined();
    for (const name of [
      'DATABASE_URL',
      'CODERUNNER_AUTH_SECRET',
      'CODERUNNER_TEST_MARKER',
      'CODERUNNER_DATA_DIR',
    ]) {
      expect(env[name], name).toBeUndefined();
    }
    expect(JSON.stringify(env)).not.toContain(SECRET_MARKER);
    expect(JSON.stringify(env)).not.toContain(db.url);

    const logs = await logText(client, created.id);
    expect(logs).toContain('install: npm install');
    expect(logs).toContain(`listening on`);

    const stopped = await client.deployments.stop.mutate({ id: created.id });
    expect(stopped.status).toBe('STOPPED');
    expect((await curl(running.publicUrl!)).status).toBe(503);
    const again = await client.deployments.stop.mutate({ id: created.id }).catch((e) => e);
    expect(again.data.code).toBe('CONFLICT');
    expect(again.message).toContain('this one is STOPPED');

    await client.deployments.start.mutate({ id: created.id });
    const restarted = await waitForStatus(client, created.id, ['RUNNING', 'FAILED']);
    expect(restarted.status).toBe('RUNNING');
    expect(restarted.publicUrl).toBe(running.publicUrl); // the URL belongs to the deployment forever
    expect((await curl(running.publicUrl!)).body).toContain('hello from node');

    const sandboxes = await server.deps.deployments!.engine.provider.list({
      metadata: { deploymentId: created.id },
    });
    expect(sandboxes).toHaveLength(1);
    const destroyed = await client.deployments.destroy.mutate({ id: created.id });
    expect(destroyed.status).toBe('DESTROYED');
    expect(destroyed.publicUrl).toBe(running.publicUrl);
    expect(await client.deployments.destroy.mutate({ id: created.id })).toMatchObject({
      status: 'DESTROYED',
    });
    expect(processesOfSandbox(sandboxes[0]!.id)).toEqual([]);
    expect(fs.existsSync(path.join(dataDir, 'sandboxes', sandboxes[0]!.id))).toBe(false);
    expect(fs.existsSync(path.join(dataDir, 'sources', `${created.id}.tar.gz`))).toBe(false);
    expect((await curl(running.publicUrl!)).status).toBe(503);
  });

  it('a dependency-free Python app and a manifest app reach RUNNING and serve their body', async () => {
    const python = await deployFolder(
      client,
      projectId,
      appFolder({
        'main.py': `import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"hello from python")
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`,
      }),
    );
    const manifest = await deployFolder(
      client,
      projectId,
      appFolder({
        'coderunner.json': JSON.stringify({
          start: 'node app.js',
          build: 'echo built > built.txt',
          env: { GREETING: 'hello from the manifest' },
          healthcheckPath: '/ready',
        }),
        'app.js': `const fs = require('fs');
require('http').createServer((req, res) => {
  res.statusCode = req.url === '/ready' || req.url === '/' ? 200 : 404;
  res.end(process.env.GREETING + ' ' + fs.readFileSync('built.txt', 'utf8').trim());
}).listen(process.env.PORT, '127.0.0.1');`,
      }),
    );
    expect(python.runtimeType).toBe('python');
    expect(manifest.runtimeType).toBe('manifest');
    for (const [d, body] of [
      [python, 'hello from python'],
      [manifest, 'hello from the manifest built'],
    ] as const) {
      const r = await waitForStatus(client, d.id, ['RUNNING', 'FAILED']);
      expect(r.status, await logText(client, d.id)).toBe('RUNNING');
      expect((await curl(r.publicUrl!)).body).toBe(body);
      await client.deployments.destroy.mutate({ id: d.id });
    }
  });

  it('a build error, an app that never listens and an app that crashes end FAILED with the reason in the logs and in deployments.get/list', async () => {
    const buildError = await deployFolder(
      client,
      projectId,
      appFolder({
        'package.json': JSON.stringify({
          scripts: {
            build: 'echo compiling; echo "syntax error in main.ts" >&2; exit 3',
            start: 'node x.js',
          },
        }),
      }),
    );
    const neverListens = await deployFolder(
      client,
      projectId,
      appFolder({
        'package.json': JSON.stringify({ scripts: { start: 'node -e "setInterval(() => {}, 1000)"' } }),
      }),
    );
    const crashes = await deployFolder(
      client,
      projectId,
      appFolder({
        // Not restarted (restarts: restarts.test.ts): its first exit is final.
        'coderunner.json': JSON.stringify({ start: 'node server.js', restart: 'never' }),
        'server.js': `require('http').createServer((q, s) => s.end('ok')).listen(process.env.PORT, '127.0.0.1', () => {
  setTimeout(() => { console.error('fatal: out of cheese'); process.exit(7); }, 4000);
});`,
      }),
    );
    const b = await waitForStatus(client, buildError.id, ['FAILED', 'RUNNING']);
    expect(b.status).toBe('FAILED');
    const bLogs = await logText(client, buildError.id);
    expect(bLogs).toContain('syntax error in main.ts');
    expect(bLogs).toMatch(/FAILED: build failed: .*exited with code 3/);

    const n = await waitForStatus(client, neverListens.id, ['FAILED', 'RUNNING']);
    expect(n.status).toBe('FAILED');
    expect(await logText(client, neverListens.id)).toMatch(/FAILED: .*did not listen on port \d+ within 5 s/);

    const c = await waitForStatus(client, crashes.id, ['FAILED'], 20_000);
    expect(c.status).toBe('FAILED');
    const cLogs = await logText(client, crashes.id);
    expect(cLogs).toMatch(/running at http/); // it did reach RUNNING first
    expect(cLogs).toContain('fatal: out of cheese');
    expect(cLogs).toContain('FAILED: the app exited with code 7');
    expect(
      await server.deps.deployments!.engine.provider.list({ metadata: { deploymentId: crashes.id } }),
    ).toEqual([]);

    // The reason, read from the log's `failed` event: what failed, then the output line that says why.
    const reasons = {
      [buildError.id]: /^build failed: `npm run build` exited with code 3\nsyntax error in main\.ts$/,
      [neverListens.id]: /^the app did not listen on port \d+ within 5 s$/,
      [crashes.id]: /^the app exited with code 7\nfatal: out of cheese$/,
    };
    for (const [id, reason] of Object.entries(reasons))
      expect((await client.deployments.get.query({ id })).failureReason).toMatch(reason);
    const listed = await client.deployments.list.query({ projectId, limit: 100 });
    for (const [id, reason] of Object.entries(reasons))
      expect(listed.items.find((d) => d.id === id)?.failureReason).toMatch(reason);
    for (const d of listed.items.filter((x) => x.status !== 'FAILED')) expect(d.failureReason).toBeNull();
  });
});

describe('uploads', () => {
  it('refuses path traversal, absolute paths, symlink escapes and non-gzip data, writing nothing outside', async () => {
    const { execFileSync } = await import('node:child_process');
    const craft = (kind: string) =>
      execFileSync(
        '/usr/bin/python3',
        [
          '-c',
          `import tarfile, io, sys
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode='w:gz') as t:
    kind = sys.argv[1]
    def add(name, data=b'x', type=tarfile.REGTYPE, link=''):
        i = tarfile.TarInfo(name); i.size = len(data) if type == tarfile.REGTYPE else 0; i.type = type; i.linkname = link
        t.addfile(i, io.BytesIO(data) if type == tarfile.REGTYPE else None)
    add('package.json', b'{"scripts":{"start":"node a.js"}}')
    if kind == 'traversal': add('../../escaped-by-traversal', b'pwned')
    if kind == 'absolute': add('/tmp/escaped-by-absolute', b'pwned')
    if kind == 'symlink':
        add('link', type=tarfile.SYMTYPE, link='/tmp')
        add('link/escaped-by-symlink', b'pwned')
sys.stdout.buffer.write(buf.getvalue())`,
          kind,
        ],
        { maxBuffer: 1 << 20 },
      );
    for (const kind of ['traversal', 'absolute', 'symlink']) {
      const err = await client.deployments.create
        .mutate(await uploadForm(projectId, craft(kind)))
        .catch((e) => e);
      expect(err.data?.code, kind).toBe('BAD_REQUEST');
      expect(err.message.length).toBeGreaterThan(10);
    }
    for (const leaked of [
      '/tmp/escaped-by-absolute',
      '/tmp/escaped-by-symlink',
      path.join(os.tmpdir(), '..', 'escaped-by-traversal'),
    ]) {
      expect(fs.existsSync(leaked), leaked).toBe(false);
    }
    const notGzip = await client.deployments.create
      .mutate(await uploadForm(projectId, Buffer.from('just text')))
      .catch((e) => e);
    expect(notGzip.data.code).toBe('BAD_REQUEST');
    expect(notGzip.message).toMatch(/gzip/);
  });

  it('deleting a project destroys its deployments: the running app, a build under way, sources and logs', async () => {
    // Before, only the rows went (ON DELETE CASCADE): the app kept serving, the build kept its worker,
    // the database and files stayed, and none of it counted against the plan any more.
    const doomed = await client.projects.create.mutate({ name: 'doomed' });
    const app = await deployFolder(
      client,
      doomed.id,
      appFolder({
        'coderunner.json': JSON.stringify({ start: 'node server.js' }),
        'server.js': `require('http').createServer((q, r) => r.end('doomed')).listen(process.env.PORT, '127.0.0.1');`,
      }),
    );
    const running = await waitForStatus(client, app.id, ['RUNNING', 'FAILED']);
    expect(running.status, await logText(client, app.id)).toBe('RUNNING');
    expect((await curl(running.publicUrl!)).body).toBe('doomed');
    const build = await deployFolder(
      client,
      doomed.id,
      appFolder({ 'coderunner.json': JSON.stringify({ install: 'sleep 100', start: 'sleep 100' }) }),
    );
    expect((await waitForStatus(client, build.id, ['BUILDING', 'FAILED'])).status).toBe('BUILDING');
    const provider = server.deps.deployments!.engine.provider;
    const sandboxes = [
      ...(await provider.list({ metadata: { deploymentId: app.id } })),
      ...(await provider.list({ metadata: { deploymentId: build.id } })),
    ];
    expect(sandboxes).toHaveLength(2);
    const before = await client.auth.usage.query();

    await client.projects.delete.mutate({ id: doomed.id });
    for (const sandbox of sandboxes) expect(processesOfSandbox(sandbox.id), sandbox.id).toEqual([]);
    expect((await curl(running.publicUrl!)).status).not.toBe(200);
    for (const id of [app.id, build.id]) {
      expect(fs.existsSync(path.join(dataDir, 'sources', `${id}.tar.gz`)), id).toBe(false);
      expect(fs.existsSync(path.join(dataDir, 'logs', id)), id).toBe(false);
    }
    expect((await client.auth.usage.query()).used.activeDeployments).toBe(before.used.activeDeployments - 2);
  });

  it('refuses an upload over CODERUNNER_MAX_UPLOAD_MB with PAYLOAD_TOO_LARGE naming the limit', async () => {
    const big = Buffer.alloc(2 * 1024 * 1024, 7);
    const err = await client.deployments.create.mutate(await uploadForm(projectId, big)).catch((e) => e);
    expect(err.data?.code).toBe('PAYLOAD_TOO_LARGE');
    expect(err.message).toMatch(/limit is 1 MB/);
  });

  it('refuses invalid fields and a foreign or missing project', async () => {
    const archive = Buffer.alloc(0);
    const bad = await client.deployments.create.mutate(await uploadForm('nope', archive)).catch((e) => e);
    expect(bad.data.code).toBe('BAD_REQUEST');
    expect(bad.message).toMatch(/projectId/);
    const missing = await client.deployments.create
      .mutate(
        await uploadForm(
          crypto.randomUUID(),
          (await (await import('@coderunner/api/pack')).packFolder(appFolder(NODE_APP))).archive,
        ),
      )
      .catch((e) => e);
    expect(missing.data.code).toBe('NOT_FOUND');
    // The project is checked before the upload is unpacked (an archive is not unpacked for a caller
    // who may not deploy there): a broken one to a missing project is NOT_FOUND, not BAD_REQUEST.
    const unchecked = await client.deployments.create
      .mutate(await uploadForm(crypto.randomUUID(), Buffer.from('not an archive')))
      .catch((e) => e);
    expect(unchecked.data.code).toBe('NOT_FOUND');
  });
});
