/**
 * Projects' environment variables through the API (real PostgreSQL, real files in a data folder):
 * set/unset/list/reveal, the owner-only rule, masking, encryption at rest, the rules on names and
 * sizes, concurrent updates, and the per-deployment snapshot kept next to the stored source.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { User } from '@coderunner/db';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SourceStore } from '../src/deployments/source-store';
import { ENV_MASK } from '../src/env-vars';
import { packFolder } from '../src/pack';
import { createKeyring, isSealedBox, open } from '../src/secrets';
import { setupApi, type TestApi } from './helpers';

type Caller = Awaited<ReturnType<TestApi['register']>>['as'];

let api: TestApi;
let me: Caller;
let other: Caller;
let dataDir: string;
let sources: SourceStore;

const SECRET = 'pl41ntext-must-never-be-on-disk-7f3a';

async function failure(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code: string; message: string };
  }
  throw new Error('expected the call to fail');
}

/** Every file under `dir`, as bytes. */
function allFiles(dir: string): { file: string; data: Buffer }[] {
  const out: { file: string; data: Buffer }[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...allFiles(full));
    else if (entry.isFile()) out.push({ file: full, data: fs.readFileSync(full) });
  }
  return out;
}

async function upload(projectId: string, env?: Record<string, unknown> | string): Promise<FormData> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cr-env-'));
  fs.writeFileSync(path.join(dir, 'package.json'), '{"scripts":{"start":"node server.js"}}');
  fs.writeFileSync(path.join(dir, 'server.js'), '');
  const form = new FormData();
  form.set('projectId', projectId);
  if (env !== undefined) form.set('env', typeof env === 'string' ? env : JSON.stringify(env));
  form.set('source', new Blob([(await packFolder(dir)).archive]), 'source.tar.gz');
  fs.rmSync(dir, { recursive: true });
  return form;
}

beforeAll(async () => {
  api = await setupApi();
  const mine = await api.register();
  await User.update({ planType: 'team' }, { where: { id: mine.userId } }); // many projects and deployments
  me = mine.as;
  other = (await api.register()).as;
  const service = api.deps.deployments!;
  dataDir = path.dirname(service.projectEnv.dir);
  sources = service.sources;
});
afterAll(() => api.close());

describe('env.set / env.unset / env.list', () => {
  it('sets, lists masked or revealed (sorted by name), replaces, and unsets reporting names not set', async () => {
    const { id } = await me.projects.create({ name: 'env-basic' });
    expect(await me.env.list({ projectId: id })).toEqual({ items: [] });

    const set = await me.env.set({ projectId: id, vars: { B_TOKEN: 'b-value', A_URL: 'https://a.example' } });
    expect(set).toEqual({
      items: [
        { name: 'A_URL', value: ENV_MASK },
        { name: 'B_TOKEN', value: ENV_MASK },
      ],
    });
    expect(ENV_MASK).toBe('••••••');
    // The mask is the same whatever the value (nothing of it, not even its length, is shown).
    await me.env.set({ projectId: id, vars: { EMPTY: '', LONG: 'x'.repeat(5000) } });
    const masked = await me.env.list({ projectId: id });
    expect(new Set(masked.items.map((i) => i.value))).toEqual(new Set([ENV_MASK]));
    expect(JSON.stringify(masked)).not.toContain('b-value');

    expect((await me.env.list({ projectId: id, reveal: true })).items).toEqual([
      { name: 'A_URL', value: 'https://a.example' },
      { name: 'B_TOKEN', value: 'b-value' },
      { name: 'EMPTY', value: '' },
      { name: 'LONG', value: 'x'.repeat(5000) },
    ]);

    await me.env.set({ projectId: id, vars: { B_TOKEN: 'b2 with spaces=and "quotes"\nand a newline' } });
    const revealed = await me.env.list({ projectId: id, reveal: true });
    expect(revealed.items.find((i) => i.name === 'B_TOKEN')?.value).toBe(
      'b2 with spaces=and "quotes"\nand a newline',
    );

    const unset = await me.env.unset({ projectId: id, names: ['A_URL', 'NEVER_SET', 'LONG', 'A_URL'] });
    expect(unset.removed).toEqual(['A_URL', 'LONG']);
    expect(unset.notSet).toEqual(['NEVER_SET']);
    expect(unset.items.map((i) => i.name)).toEqual(['B_TOKEN', 'EMPTY']);
    expect(unset.items.every((i) => i.value === ENV_MASK)).toBe(true);

    // Unsetting the last variables removes the project's file.
    await me.env.unset({ projectId: id, names: ['B_TOKEN', 'EMPTY'] });
    expect(fs.existsSync(path.join(dataDir, 'env', `${id}.json`))).toBe(false);
    expect((await me.env.list({ projectId: id })).items).toEqual([]);
  });

  it("another user's project answers NOT_FOUND exactly like a missing one, and is left unchanged", async () => {
    const { id } = await me.projects.create({ name: 'env-owner' });
    await me.env.set({ projectId: id, vars: { MINE: 'only mine' } });
    const missing = crypto.randomUUID();
    const attacks = [
      (p: string) => other.env.list({ projectId: p, reveal: true }),
      (p: string) => other.env.set({ projectId: p, vars: { MINE: 'stolen' } }),
      (p: string) => other.env.unset({ projectId: p, names: ['MINE'] }),
    ];
    for (const attack of attacks) {
      const [a, b] = [await failure(attack(id)), await failure(attack(missing))];
      expect(a.code).toBe('NOT_FOUND');
      expect([a.code, a.message]).toEqual([b.code, b.message]);
    }
    expect((await me.env.list({ projectId: id, reveal: true })).items).toEqual([
      { name: 'MINE', value: 'only mine' },
    ]);
    expect(await failure(api.caller().env.list({ projectId: id }))).toMatchObject({ code: 'UNAUTHORIZED' });
  });

  it('keeps values encrypted at rest: a sealed box bound to the project, no plaintext in the data folder or the database', async () => {
    const { id } = await me.projects.create({ name: 'env-at-rest' });
    await me.env.set({ projectId: id, vars: { API_KEY: SECRET } });
    const file = path.join(dataDir, 'env', `${id}.json`);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    const raw = fs.readFileSync(file, 'utf8');
    expect(isSealedBox(JSON.parse(raw))).toBe(true);
    expect(raw).not.toContain(SECRET);
    expect(raw).not.toContain('API_KEY'); // names are sealed too
    // A deployment's snapshot too.
    const d = await me.deployments.create(await upload(id, { EXTRA: `${SECRET}-override` }));
    for (const { file: f, data } of allFiles(dataDir)) {
      expect(data.includes(SECRET), f).toBe(false);
      expect(data.includes(Buffer.from(SECRET).toString('base64')), f).toBe(false);
    }
    const [rows] = await api.db.sequelize.query(
      'SELECT row_to_json(p)::text AS t FROM projects p UNION ALL SELECT row_to_json(d)::text FROM deployments d',
    );
    expect(JSON.stringify(rows)).not.toContain(SECRET);
    // The box is bound to its project: moved onto another project's file, it does not open.
    const { id: id2 } = await me.projects.create({ name: 'env-at-rest-2' });
    fs.writeFileSync(path.join(dataDir, 'env', `${id2}.json`), raw, { mode: 0o600 });
    const moved = await failure(me.env.list({ projectId: id2 }));
    expect(moved.code).toBe('PRECONDITION_FAILED');
    expect(moved.message).toMatch(/^cannot decrypt the project's variables: /);
    expect(moved.message).not.toContain(SECRET);
    fs.rmSync(path.join(dataDir, 'env', `${id2}.json`));
    await me.deployments.destroy({ id: d.id });
  });

  it('refuses invalid and reserved names, NUL, oversized values, too many or too large variables, naming the variable', async () => {
    const { id } = await me.projects.create({ name: 'env-rules' });
    const cases: [Record<string, string>, string][] = [
      [{ PORT: '1' }, 'PORT is set by the platform; choose another name'],
      [{ DATABASE_URL: 'x' }, 'DATABASE_URL is set by the platform; choose another name'],
      [{ PGPASSWORD: 'x' }, 'PGPASSWORD is set by the platform; choose another name'],
      [{ HOME: '/' }, 'HOME is set by the platform; choose another name'],
      [{ PATH: '/' }, 'PATH is set by the platform; choose another name'],
      [{ CODERUNNER_SANDBOX_ID: 'x' }, 'CODERUNNER_SANDBOX_ID is set by the platform; choose another name'],
      [
        { '1ABC': 'x' },
        '"1ABC" is not a valid variable name: use letters, digits and _, not starting with a digit',
      ],
      [{ 'MY-VAR': 'x' }, '"MY-VAR" is not a valid variable name'],
      [{ 'A B': 'x' }, '"A B" is not a valid variable name'],
      [{ '': 'x' }, '"" is not a valid variable name'],
      [{ NUL: 'a\u0000b' }, 'NUL: the value must not contain NUL characters'],
      [{ BIG: 'x'.repeat(32 * 1024 + 1) }, 'BIG: the value is 32769 bytes; the limit is 32768 (32 KiB)'],
      [{ EMOJI: '€'.repeat(11_000) }, 'EMOJI: the value is 33000 bytes'],
    ];
    for (const [vars, message] of cases) {
      const err = await failure(me.env.set({ projectId: id, vars }));
      expect(err.code, message).toBe('BAD_REQUEST');
      expect(err.message).toContain(message);
    }
    // Exactly at the value limit is fine; a name such as Port or _x is fine (names are case-sensitive).
    await me.env.set({ projectId: id, vars: { MAX: 'x'.repeat(32 * 1024), Port: '1', _x: '' } });
    // Total size: two values of 32 KiB and a little more goes over 64 KiB.
    const total = await failure(me.env.set({ projectId: id, vars: { MAX2: 'y'.repeat(32 * 1024) } }));
    expect(total.code).toBe('BAD_REQUEST');
    expect(total.message).toMatch(
      /^the variables would take \d+ bytes in all; the limit is 65536 \(64 KiB\)$/,
    );
    await me.env.unset({ projectId: id, names: ['MAX', 'Port', '_x'] });
    // Count: 100 is the most.
    const hundred = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`V${i}`, String(i)]));
    await me.env.set({ projectId: id, vars: hundred });
    const count = await failure(me.env.set({ projectId: id, vars: { ONE_MORE: '1' } }));
    expect([count.code, count.message]).toEqual([
      'BAD_REQUEST',
      'at most 100 variables are allowed; this would make 101 (unset some first)',
    ]);
    expect((await me.env.list({ projectId: id })).items).toHaveLength(100);
    // Nothing was stored by the refused calls; an empty set and a bad unset name are refused too.
    expect(await failure(me.env.set({ projectId: id, vars: {} }))).toMatchObject({ code: 'BAD_REQUEST' });
    expect(await failure(me.env.unset({ projectId: id, names: ['NOT-A-NAME'] }))).toMatchObject({
      code: 'BAD_REQUEST',
      message:
        '"NOT-A-NAME" is not a valid variable name: use letters, digits and _, not starting with a digit',
    });
  });

  it('loses no update when many sets and unsets run at once', async () => {
    const { id } = await me.projects.create({ name: 'env-concurrent' });
    await me.env.set({ projectId: id, vars: { DOOMED: 'x' } });
    await Promise.all([
      ...Array.from({ length: 20 }, (_, i) => me.env.set({ projectId: id, vars: { [`K${i}`]: `v${i}` } })),
      me.env.unset({ projectId: id, names: ['DOOMED'] }),
    ]);
    const { items } = await me.env.list({ projectId: id, reveal: true });
    expect(items.map((i) => i.name).sort()).toEqual(Array.from({ length: 20 }, (_, i) => `K${i}`).sort());
    expect(items.every((i) => i.value === `v${i.name.slice(1)}`)).toBe(true);
  });

  it("waits for the project's row lock, so a replica's read-modify-write in between is not lost", async () => {
    const { id } = await me.projects.create({ name: 'env-locked' });
    const store = api.deps.deployments!.projectEnv;
    // Another replica: locks the row and reads the variables, then (while env.set is called here)
    // writes its change and commits.
    const tx = await api.db.sequelize.transaction();
    await api.db.sequelize.query('SELECT id FROM projects WHERE id = :id FOR UPDATE', {
      replacements: { id },
      transaction: tx,
    });
    const seen = store.read(id);
    let settled = false;
    const call = me.env.set({ projectId: id, vars: { FROM_API: 'a' } }).finally(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(settled).toBe(false); // waiting for the lock
    store.write(id, { ...seen, FROM_REPLICA: 'b' });
    await tx.commit();
    await call;
    expect((await me.env.list({ projectId: id, reveal: true })).items).toEqual([
      { name: 'FROM_API', value: 'a' },
      { name: 'FROM_REPLICA', value: 'b' },
    ]);
  });

  it('deleting a project removes its variables file', async () => {
    const { id } = await me.projects.create({ name: 'env-deleted' });
    await me.env.set({ projectId: id, vars: { GONE: 'soon' } });
    const file = path.join(dataDir, 'env', `${id}.json`);
    expect(fs.existsSync(file)).toBe(true);
    await me.projects.delete({ id });
    expect(fs.existsSync(file)).toBe(false);
  });
});

describe("a deployment's environment snapshot", () => {
  it('is the project variables with the deploy overrides, sealed to the deployment next to its source; later changes do not touch it', async () => {
    const { id } = await me.projects.create({ name: 'env-snapshot' });
    await me.env.set({ projectId: id, vars: { GREETING: 'hello', KEEP: 'kept' } });
    const d = await me.deployments.create(await upload(id, { GREETING: 'overridden', ONLY_HERE: '1' }));
    expect(sources.readEnv(d.id)).toEqual({ GREETING: 'overridden', KEEP: 'kept', ONLY_HERE: '1' });

    await me.env.set({ projectId: id, vars: { GREETING: 'changed later', NEW: 'new' } });
    await me.env.unset({ projectId: id, names: ['KEEP'] });
    expect(sources.readEnv(d.id)).toEqual({ GREETING: 'overridden', KEEP: 'kept', ONLY_HERE: '1' });

    const stored = JSON.parse(fs.readFileSync(path.join(dataDir, 'sources', `${d.id}.json`), 'utf8'));
    expect(Object.keys(stored).sort()).toEqual(['env']);
    expect(isSealedBox(stored.env)).toBe(true);
    expect(JSON.stringify(stored)).not.toContain('overridden');
    expect(sources.readOptions(d.id)).toEqual({}); // the options do not carry the snapshot

    // A deployment of a project without variables stores no snapshot.
    const { id: bare } = await me.projects.create({ name: 'env-snapshot-bare' });
    const plain = await me.deployments.create(await upload(bare));
    expect(JSON.parse(fs.readFileSync(path.join(dataDir, 'sources', `${plain.id}.json`), 'utf8'))).toEqual(
      {},
    );
    expect(sources.readEnv(plain.id)).toEqual({});

    // copy: source, options and snapshot as another deployment's, sealed again to it.
    const to = crypto.randomUUID();
    sources.copy(d.id, to);
    expect(sources.exists(to)).toBe(true);
    expect(fs.readFileSync(path.join(dataDir, 'sources', `${to}.tar.gz`))).toEqual(
      fs.readFileSync(path.join(dataDir, 'sources', `${d.id}.tar.gz`)),
    );
    expect(sources.readEnv(to)).toEqual(sources.readEnv(d.id));
    const copied = JSON.parse(fs.readFileSync(path.join(dataDir, 'sources', `${to}.json`), 'utf8'));
    expect(copied.env.ct).not.toBe(stored.env.ct);
    // remove takes the snapshot along.
    sources.remove(to);
    expect(fs.readdirSync(path.join(dataDir, 'sources')).filter((f) => f.startsWith(to))).toEqual([]);

    for (const x of [d, plain]) await me.deployments.destroy({ id: x.id });
    expect(fs.existsSync(path.join(dataDir, 'sources', `${d.id}.json`))).toBe(false);
  });

  it('refuses bad overrides with the same messages as env.set, and a merged set over the limits', async () => {
    const { id } = await me.projects.create({ name: 'env-overrides' });
    const bad: [string | Record<string, unknown>, string][] = [
      [{ PORT: '80' }, 'PORT is set by the platform; choose another name'],
      [{ 'BAD NAME': 'x' }, '"BAD NAME" is not a valid variable name'],
      [{ N: 1 }, 'N: the value must be a string'],
      [{ Z: 'a\u0000' }, 'Z: the value must not contain NUL characters'],
      ['not json', 'env: must be a JSON object of variables'],
      ['["A=1"]', 'env: must be a JSON object of variables'],
      ['null', 'env: must be a JSON object of variables'],
    ];
    for (const [env, message] of bad) {
      const err = await failure(me.deployments.create(await upload(id, env)));
      expect(err.code, message).toBe('BAD_REQUEST');
      expect(err.message).toContain(message);
    }
    await me.env.set({
      projectId: id,
      vars: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`V${i}`, 'x'])),
    });
    const over = await failure(me.deployments.create(await upload(id, { V100: 'x' })));
    expect([over.code, over.message]).toEqual([
      'BAD_REQUEST',
      'at most 100 variables are allowed; this would make 101 (unset some first)',
    ]);
    // Overriding an existing name keeps the count.
    const ok = await me.deployments.create(await upload(id, { V1: 'y' }));
    expect(sources.readEnv(ok.id).V1).toBe('y');
    await me.deployments.destroy({ id: ok.id });
    expect((await me.deployments.list({ projectId: id })).items.map((x) => x.status)).toEqual(['DESTROYED']);
  });

  it("does not open with another keyring or under another deployment's id", async () => {
    const { id } = await me.projects.create({ name: 'env-keys' });
    const d = await me.deployments.create(await upload(id, { ONLY: 'me' }));
    const stored = JSON.parse(fs.readFileSync(path.join(dataDir, 'sources', `${d.id}.json`), 'utf8'));
    const stranger = createKeyring([{ kid: stored.env.kid, key: new Uint8Array(32).fill(7) }]);
    expect(() => open(stranger, stored.env, d.id)).toThrow(/cannot decrypt/);
    await me.deployments.destroy({ id: d.id });
  });
});
