import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTestDatabase, type TestDatabase } from '@coderunner/db/testing';
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createKeyring,
  generateKey,
  isSealedBox,
  type Keyring,
  type KeyringChange,
  loadKeyring,
  needsRotation,
  open,
  parseKeyList,
  rotateSealedColumn,
  type SealedBox,
  SecretBoxError,
  seal,
  sqlSealedColumn,
  writeKeys,
} from '../src/secrets';

const KEY1 = randomBytes(32).toString('base64');
const KEY2 = randomBytes(32).toString('base64');
const secret = {
  host: '127.0.0.1',
  port: 5432,
  user: 'app_1',
  password: 'password-value-42',
  database: 'app_1',
  url: 'postgres://app_1:password-value-42@127.0.0.1:5432/app_1',
};

function keyring(spec: string): Keyring {
  return parseKeyList(spec, 'CODERUNNER_ENCRYPTION_KEYS');
}

/** Flips one bit of a base64 field's bytes. */
function flip(field: string): string {
  const bytes = Buffer.from(field, 'base64');
  bytes[0]! ^= 0x01;
  return bytes.toString('base64');
}

function errorOf(fn: () => unknown): SecretBoxError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SecretBoxError);
    return err as SecretBoxError;
  }
  throw new Error('expected a SecretBoxError');
}

describe('secret box', () => {
  const ring = keyring(`k1:${KEY1}`);

  it('round-trips a JSON object, with and without additional data', () => {
    expect(open(ring, seal(ring, secret))).toEqual(secret);
    const id = randomUUID();
    expect(open(ring, seal(ring, secret, id), id)).toEqual(secret);
    fc.assert(
      fc.property(
        fc.dictionary(fc.string(), fc.jsonValue()),
        fc.option(fc.string(), { nil: undefined }),
        (value, aad) => {
          expect(open(ring, seal(ring, value, aad), aad)).toEqual(JSON.parse(JSON.stringify(value)));
        },
      ),
    );
  });

  it('stores {v, kid, iv, tag, ct} only, with a fresh 12-byte IV each time and no plaintext', () => {
    const a = seal(ring, secret);
    const b = seal(ring, secret);
    expect(Object.keys(a).sort()).toEqual(['ct', 'iv', 'kid', 'tag', 'v']);
    expect(a).toMatchObject({ v: 1, kid: 'k1' });
    expect(Buffer.from(a.iv, 'base64')).toHaveLength(12);
    expect(Buffer.from(a.tag, 'base64')).toHaveLength(16);
    expect(a.iv).not.toBe(b.iv);
    expect(a.ct).not.toBe(b.ct);
    expect(JSON.stringify(a)).not.toContain('password-value');
    expect(isSealedBox(a)).toBe(true);
  });

  it.each(['iv', 'tag', 'ct'] as const)('refuses a box whose %s was altered', (field) => {
    const box = seal(ring, secret, 'row-1');
    const err = errorOf(() => open(ring, { ...box, [field]: flip(box[field]) }, 'row-1'));
    expect(err.code).toBe('cannot-decrypt');
    expect(err.message).toBe('cannot decrypt: the data was altered or the key is wrong');
  });

  it('refuses a box whose kid was altered', () => {
    const both = keyring(`k2:${KEY2},k1:${KEY1}`);
    const box = seal(both, secret); // k2
    expect(errorOf(() => open(both, { ...box, kid: 'k1' })).code).toBe('cannot-decrypt');
    expect(errorOf(() => open(both, { ...box, kid: 'k3' })).code).toBe('unknown-key');
    expect(errorOf(() => open(both, { ...box, kid: 'not a kid!' })).code).toBe('malformed');
  });

  it('refuses a box of a key it does not have, naming the key', () => {
    const old = keyring(`old:${KEY2}`);
    const err = errorOf(() => open(ring, seal(old, secret)));
    expect(err.code).toBe('unknown-key');
    expect(err.message).toBe('encrypted with key "old", which is not in CODERUNNER_ENCRYPTION_KEYS');
  });

  it('refuses a box under the right kid but another key', () => {
    const impostor = keyring(`k1:${KEY2}`);
    expect(errorOf(() => open(impostor, seal(ring, secret))).code).toBe('cannot-decrypt');
  });

  it('binds a box to its row through the additional data', () => {
    const box = seal(ring, secret, 'deployment-a');
    for (const other of ['deployment-b', undefined, '']) {
      const err = errorOf(() => open(ring, box, other));
      expect(err.code).toBe('cannot-decrypt');
      expect(err.message).not.toContain('password-value');
    }
    expect(errorOf(() => open(ring, seal(ring, secret), 'deployment-a')).code).toBe('cannot-decrypt');
  });

  it('refuses values that are not boxes, and says why', () => {
    for (const value of [null, 'x', [], {}, { ...seal(ring, secret), extra: 1 }, { ...secret }]) {
      expect(isSealedBox(value)).toBe(false);
      expect(errorOf(() => open(ring, value)).code).toBe('malformed');
    }
    expect(errorOf(() => open(ring, { ...seal(ring, secret), v: 2 })).code).toBe('unsupported-version');
    expect(errorOf(() => seal(ring, 42 as unknown as object)).code).toBe('not-serializable');
  });

  it('tells which boxes need rotation', () => {
    const both = keyring(`k2:${KEY2},k1:${KEY1}`);
    expect(needsRotation(both, seal(ring, secret))).toBe(true);
    expect(needsRotation(both, seal(both, secret))).toBe(false);
    expect(open(both, seal(ring, secret))).toEqual(secret); // old keys still decrypt
  });
});

describe('loadKeyring', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coderunner-keys-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reads CODERUNNER_ENCRYPTION_KEYS: the first key encrypts, all decrypt', () => {
    const ring = loadKeyring({
      env: { CODERUNNER_ENCRYPTION_KEYS: ` k2:${KEY2} , k1:${KEY1} ` },
      dataDir: dir,
    });
    expect(ring.activeKid).toBe('k2');
    expect(ring.kids).toEqual(['k2', 'k1']);
    expect(seal(ring, secret).kid).toBe('k2');
    expect(open(ring, seal(keyring(`k1:${KEY1}`), secret))).toEqual(secret);
    // URL-safe base64 is accepted too.
    const urlSafe = Buffer.from(KEY1, 'base64').toString('base64url');
    expect(
      loadKeyring({ env: { CODERUNNER_ENCRYPTION_KEYS: `k1:${urlSafe}` }, dataDir: dir }).activeKid,
    ).toBe('k1');
    // Nothing was written to the data folder.
    expect(fs.existsSync(path.join(dir, 'encryption-keys'))).toBe(false);
  });

  it('keeps no key material where it could be logged', () => {
    const ring = loadKeyring({ env: { CODERUNNER_ENCRYPTION_KEYS: `k1:${KEY1}` }, dataDir: dir });
    expect(JSON.stringify(ring)).not.toContain(KEY1);
    expect(JSON.stringify(ring)).not.toContain(Buffer.from(KEY1, 'base64').toString('hex'));
  });

  it('otherwise generates one key, keeps it in <dataDir>/encryption-keys (0600) and reads it back', () => {
    const dataDir = path.join(dir, 'data');
    const first = loadKeyring({ env: {}, dataDir });
    const file = path.join(dataDir, 'encryption-keys');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const again = loadKeyring({ env: { CODERUNNER_ENCRYPTION_KEYS: '' }, dataDir });
    expect(again.activeKid).toBe(first.activeKid);
    expect(again.source).toBe(file);
    expect(open(again, seal(first, secret, 'x'), 'x')).toEqual(secret);
    // The file uses the variable's format, so it can be moved into CODERUNNER_ENCRYPTION_KEYS.
    const line = fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .find((l) => !l.startsWith('#'))!;
    expect(open(keyring(line), seal(first, secret))).toEqual(secret);
  });

  it('refuses a key file other users can read', () => {
    const dataDir = path.join(dir, 'loose');
    loadKeyring({ env: {}, dataDir });
    fs.chmodSync(path.join(dataDir, 'encryption-keys'), 0o644);
    expect(() => loadKeyring({ env: {}, dataDir })).toThrow(/can be read by other users \(mode 644\)/);
  });

  it.each([
    [`k1:${KEY1},k2:${KEY2.slice(0, 20)}`, 'CODERUNNER_ENCRYPTION_KEYS: key "k2" is not 32 bytes of base64'],
    [
      `k1:${KEY1},k2:${randomBytes(16).toString('base64')}`,
      'CODERUNNER_ENCRYPTION_KEYS: key "k2" is not 32 bytes',
    ],
    [
      `k1:${KEY1},k2:not*base64*at*all*${KEY2}`,
      'CODERUNNER_ENCRYPTION_KEYS: key "k2" is not 32 bytes of base64',
    ],
    [`k1:${KEY1},${KEY2}`, 'CODERUNNER_ENCRYPTION_KEYS: entry 2 is not of the form kid:base64key'],
    [`${KEY2.slice(0, 10)}+/:${KEY1}`, 'CODERUNNER_ENCRYPTION_KEYS: entry 1 has an invalid key id'],
    [`k1:${KEY1},k1:${KEY2}`, 'CODERUNNER_ENCRYPTION_KEYS: key id "k1" appears twice'],
    [' , ', null], // separators only
  ])('explains a malformed CODERUNNER_ENCRYPTION_KEYS without showing keys (%#)', (value, message) => {
    const dataDir = path.join(dir, `env-${randomBytes(4).toString('hex')}`);
    if (message === null) {
      expect(() => loadKeyring({ env: { CODERUNNER_ENCRYPTION_KEYS: value }, dataDir })).toThrow(
        'CODERUNNER_ENCRYPTION_KEYS holds no keys',
      );
      return;
    }
    let err: unknown;
    try {
      loadKeyring({ env: { CODERUNNER_ENCRYPTION_KEYS: value }, dataDir });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SecretBoxError);
    const text = `${(err as Error).message} ${(err as Error).stack}`;
    expect((err as Error).message).toContain(message);
    for (const key of [KEY1, KEY2, KEY1.slice(0, 12), KEY2.slice(0, 10)]) expect(text).not.toContain(key);
  });

  it('creates keyrings from keys in memory', () => {
    const ring = createKeyring([{ kid: 'mem', key: randomBytes(32) }]);
    expect(open(ring, seal(ring, secret))).toEqual(secret);
    expect(() => createKeyring([{ kid: 'short', key: randomBytes(31) }])).toThrow(
      'key "short" is not 32 bytes',
    );
  });
});

describe('a keyring read from the key file follows the file', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'coderunner-keyfile-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A data folder whose key file holds `k1`, and a keyring loaded from it that records its changes. */
  function setUp() {
    const dataDir = path.join(dir, randomBytes(4).toString('hex'));
    const k1 = { kid: 'k1', key: Buffer.from(KEY1, 'base64') };
    writeKeys(dataDir, [k1]);
    const changes: KeyringChange[] = [];
    const ring = loadKeyring({ env: {}, dataDir, onChange: (c) => changes.push(c) });
    return { dataDir, k1, ring, changes, file: path.join(dataDir, 'encryption-keys') };
  }

  it('opens what another process sealed with a key added since, and seals with a new first key at once', () => {
    const { dataDir, k1, ring, changes, file } = setUp();
    expect(ring.activeKid).toBe('k1');
    const k2 = generateKey();
    // Another process (rotate-keys) adds k2 beside k1, then makes it first and seals with it.
    writeKeys(dataDir, [k1, k2]);
    const other = createKeyring([k2]);
    expect(open(ring, seal(other, secret, 'row'), 'row')).toEqual(secret);
    expect(seal(ring, secret).kid).toBe('k1'); // still the first
    writeKeys(dataDir, [k2, k1]);
    expect(seal(ring, secret).kid).toBe(k2.kid);
    expect(ring.activeKid).toBe(k2.kid);
    expect(needsRotation(ring, seal(createKeyring([k1]), secret))).toBe(true);
    // Retiring k1 after the re-encryption is taken too.
    writeKeys(dataDir, [k2]);
    expect(ring.kids).toEqual([k2.kid]);
    expect(changes).toEqual([
      { kind: 'reloaded', source: file, activeKid: 'k1', kids: ['k1', k2.kid] },
      { kind: 'reloaded', source: file, activeKid: k2.kid, kids: [k2.kid, 'k1'] },
      { kind: 'reloaded', source: file, activeKid: k2.kid, kids: [k2.kid] },
    ]);
    // Key material stays out of what could be logged.
    expect(JSON.stringify({ ring, changes })).not.toContain(KEY1);
    expect(JSON.stringify({ ring, changes })).not.toContain(k2.key.toString('base64'));
  });

  it('keeps the keys it has, and says why, when the file is malformed, loose or drops the active key', () => {
    const { ring, changes, file } = setUp();
    const sealedWithK1 = seal(ring, secret);
    const reasons = () => changes.map((c) => (c.kind === 'refused' ? c.reason : `reloaded ${c.activeKid}`));

    // Cut in the middle of a line (a copy or an editor caught mid-write).
    fs.writeFileSync(file, `k2:${KEY2}\nk1:${KEY1.slice(0, 20)}`);
    expect(seal(ring, secret).kid).toBe('k1');
    expect(open(ring, sealedWithK1)).toEqual(secret);
    expect(reasons()).toEqual([
      `${file}: key "k1" is not 32 bytes of base64 (make one with: openssl rand -base64 32)`,
    ]);

    // Cut after a line: well-formed, but the key in use is gone.
    fs.writeFileSync(file, `k2:${KEY2}\n`);
    expect(seal(ring, secret).kid).toBe('k1');
    expect(open(ring, sealedWithK1)).toEqual(secret);
    expect(reasons()[1]).toMatch(/no longer holds the active key "k1": kept the keys read before/);

    fs.writeFileSync(file, `k2:${KEY2}\nk1:${KEY1}\n`);
    fs.chmodSync(file, 0o644);
    expect(ring.activeKid).toBe('k1');
    expect(reasons()[2]).toMatch(/can be read by other users \(mode 644\)/);

    // Once the file is right, it is taken.
    fs.chmodSync(file, 0o600);
    expect(ring.activeKid).toBe('k2');
    expect(reasons()).toHaveLength(4);
    expect(reasons()[3]).toBe('reloaded k2');
    // Each version of the file is told once, however often the keys are used.
    for (let i = 0; i < 5; i++) seal(ring, secret);
    expect(changes).toHaveLength(4);
    for (const text of reasons())
      for (const key of [KEY1, KEY2, KEY1.slice(0, 20)]) expect(text).not.toContain(key);
  });

  it('writeKeys replaces the file atomically, mode 0600, leaving no temp file', () => {
    const { dataDir, k1 } = setUp();
    const k2 = generateKey();
    writeKeys(dataDir, [k2, k1]);
    expect(fs.statSync(path.join(dataDir, 'encryption-keys')).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dataDir)).toEqual(['encryption-keys']);
    expect(loadKeyring({ env: {}, dataDir }).kids).toEqual([k2.kid, 'k1']);
    expect(() => writeKeys(dataDir, [k2, k2])).toThrow(`key id "${k2.kid}" appears twice`);
    expect(loadKeyring({ env: {}, dataDir }).kids).toEqual([k2.kid, 'k1']);
  });

  it('keys from CODERUNNER_ENCRYPTION_KEYS are fixed: the file beside them is not read', () => {
    const { dataDir } = setUp();
    const ring = loadKeyring({ env: { CODERUNNER_ENCRYPTION_KEYS: `k9:${KEY2}` }, dataDir });
    writeKeys(dataDir, [generateKey()]);
    expect(ring.kids).toEqual(['k9']);
    expect(ring.source).toBe('CODERUNNER_ENCRYPTION_KEYS');
  });
});

describe('rotateSealedColumn on a real PostgreSQL table', () => {
  let db: TestDatabase;
  let client: pg.Client;
  const ROWS = 1000;
  const oldRing = keyring(`k1:${KEY1}`);
  const newRing = keyring(`k2:${KEY2},k1:${KEY1}`);

  const fetchBatch = async (afterId: string | null, limit: number) =>
    (
      await client.query<{ id: string; box: unknown }>(
        'SELECT id, box FROM secrets WHERE $1::uuid IS NULL OR id > $1::uuid ORDER BY id LIMIT $2',
        [afterId, limit],
      )
    ).rows;
  const update = async (id: string, oldBox: SealedBox, newBox: SealedBox) =>
    (
      await client.query('UPDATE secrets SET box = $3::jsonb WHERE id = $1 AND box = $2::jsonb', [
        id,
        JSON.stringify(oldBox),
        JSON.stringify(newBox),
      ])
    ).rowCount === 1;
  const kids = async () =>
    Object.fromEntries(
      (
        await client.query<{ kid: string | null; n: number }>(
          `SELECT box->>'kid' AS kid, count(*)::int AS n FROM secrets GROUP BY 1 ORDER BY 1`,
        )
      ).rows.map((r) => [r.kid ?? 'none', r.n]),
    );

  beforeAll(async () => {
    db = await createTestDatabase('cr_secretbox');
    client = new pg.Client({ connectionString: db.url });
    client.on('error', () => {});
    await client.connect();
    await client.query('CREATE TABLE secrets (id uuid PRIMARY KEY, box jsonb)');
    const rows = Array.from({ length: ROWS }, (_, i) => {
      const id = randomUUID();
      return { id, box: seal(oldRing, { ...secret, password: `password-value-${i}` }, id) };
    });
    // Rows without a secret (deployments without a database) too.
    for (let i = 0; i < 10; i++) rows.push({ id: randomUUID(), box: null as unknown as SealedBox });
    await client.query(
      'INSERT INTO secrets (id, box) SELECT id, box FROM jsonb_to_recordset($1::jsonb) AS t(id uuid, box jsonb)',
      [JSON.stringify(rows)],
    );
  });

  afterAll(async () => {
    await client?.end();
    await db?.drop();
  });

  it('re-encrypts every row with the active key, surviving an interruption half way', async () => {
    expect(await kids()).toEqual({ k1: ROWS, none: 10 });

    await expect(
      rotateSealedColumn({
        keyring: newRing,
        fetchBatch,
        update,
        aad: (id) => id,
        batchSize: 100,
        onProgress: (p) => {
          if (p.scanned >= 500) throw new Error('interrupted');
        },
      }),
    ).rejects.toThrow('interrupted');
    const half = await kids();
    expect(half.k2).toBeGreaterThan(400);
    expect(half.k2).toBeLessThan(600);
    expect(half.k1).toBe(ROWS - half.k2!);

    // The second run goes through the SQL helper a command would use (it reads non-null rows only).
    const column = sqlSealedColumn(client, { table: 'secrets', column: 'box' });
    const progress: number[] = [];
    const rest = await rotateSealedColumn({
      keyring: newRing,
      ...column,
      aad: (id) => id,
      onProgress: (p) => {
        progress.push(p.scanned);
      },
    });
    expect(rest).toEqual({ scanned: ROWS, rotated: ROWS - half.k2!, skipped: half.k2!, conflicts: 0 });
    expect(progress.at(-1)).toBe(ROWS);
    expect(await kids()).toEqual({ k2: ROWS, none: 10 });

    // Every row opens with the new key alone, and only on its own row.
    const onlyNew = keyring(`k2:${KEY2}`);
    const all = (
      await client.query<{ id: string; box: unknown }>('SELECT id, box FROM secrets WHERE box IS NOT NULL')
    ).rows;
    const passwords = new Set(all.map((r) => open<typeof secret>(onlyNew, r.box, r.id).password));
    expect(passwords.size).toBe(ROWS);
    expect(() => open(onlyNew, all[0]!.box, all[1]!.id)).toThrow(SecretBoxError);

    const [check] = (
      await client.query<{ clean: number; leaky: number; shapes: number }>(
        `SELECT count(*) FILTER (WHERE box::text NOT LIKE '%password-value%')::int AS clean,
                count(*) FILTER (WHERE box::text LIKE '%password-value%')::int AS leaky,
                count(DISTINCT (SELECT string_agg(k, ',' ORDER BY k) FROM jsonb_object_keys(box) AS k))::int AS shapes
           FROM secrets WHERE box IS NOT NULL`,
      )
    ).rows;
    expect(check).toEqual({ clean: ROWS, leaky: 0, shapes: 1 });

    // A third run has nothing to do.
    expect(await rotateSealedColumn({ keyring: newRing, ...column, aad: (id) => id })).toEqual({
      scanned: ROWS,
      rotated: 0,
      skipped: ROWS,
      conflicts: 0,
    });
    expect(await rotateSealedColumn({ keyring: newRing, fetchBatch, update, aad: (id) => id })).toMatchObject(
      {
        scanned: ROWS + 10,
        skipped: ROWS + 10,
      },
    );
  });

  it('leaves a row alone when it changed between read and write', async () => {
    const [row] = (await client.query<{ id: string }>('SELECT id FROM secrets WHERE box IS NOT NULL LIMIT 1'))
      .rows;
    await client.query('UPDATE secrets SET box = $2::jsonb WHERE id = $1', [
      row!.id,
      JSON.stringify(seal(oldRing, secret, row!.id)),
    ]);
    const result = await rotateSealedColumn({
      keyring: newRing,
      fetchBatch: async (afterId, limit) => {
        const rows = await fetchBatch(afterId, limit);
        if (rows.some((r) => r.id === row!.id)) {
          // Another rotation run re-seals the row between our read and our write.
          await client.query('UPDATE secrets SET box = $2::jsonb WHERE id = $1', [
            row!.id,
            JSON.stringify(seal(newRing, { ...secret, by: 'the other run' }, row!.id)),
          ]);
        }
        return rows;
      },
      update,
      aad: (id) => id,
    });
    expect(result.conflicts).toBe(1);
    expect(result.rotated).toBe(0);
    const [after] = (await client.query<{ box: unknown }>('SELECT box FROM secrets WHERE id = $1', [row!.id]))
      .rows;
    expect(open(newRing, after!.box, row!.id)).toMatchObject({ by: 'the other run' });
  });

  it('stops on a row it cannot open, naming the row but not its content', async () => {
    const id = randomUUID();
    await client.query('INSERT INTO secrets (id, box) VALUES ($1, $2::jsonb)', [
      id,
      JSON.stringify(seal(keyring(`gone:${randomBytes(32).toString('base64')}`), secret, id)),
    ]);
    const run = rotateSealedColumn({ keyring: newRing, fetchBatch, update, aad: (x) => x });
    await expect(run).rejects.toThrow(
      `row ${id}: encrypted with key "gone", which is not in CODERUNNER_ENCRYPTION_KEYS`,
    );
    await client.query('DELETE FROM secrets WHERE id = $1', [id]);
  });
});
