/**
 * Re-encrypts with the active key every sealed box of a column sealed with an older one. The caller
 * supplies the storage (no Sequelize here): `fetchBatch` returns rows ordered by id after `afterId`
 * (keyset pagination), `update` writes a new box only if the row still holds the old one. Rows are
 * updated one by one, so the run can be interrupted at any point and started again: rows already on
 * the active key are skipped without being decrypted.
 */
import { SecretBoxError } from './errors';
import type { Keyring } from './keyring';
import { isSealedBox, needsRotation, open, type SealedBox, seal } from './secret-box';

export interface SealedRow<Id> {
  id: Id;
  /** The column's value; null/undefined (no secret) is skipped. */
  box: unknown;
}

export interface RotationProgress<Id> extends RotationResult {
  /** Id of the last row of the batch just done. */
  lastId: Id;
}

export interface RotationResult {
  /** Rows looked at. */
  scanned: number;
  /** Rows re-encrypted with the active key. */
  rotated: number;
  /** Rows already on the active key, or without a value. */
  skipped: number;
  /** Rows whose value changed while we worked on it (the update matched nothing): left as they are. */
  conflicts: number;
}

export interface RotateSealedColumnOptions<Id> {
  keyring: Keyring;
  /** Up to `limit` rows with id > afterId (all rows when afterId is null), ordered by id. */
  fetchBatch(afterId: Id | null, limit: number): Promise<readonly SealedRow<Id>[]>;
  /** Store `newBox` only where the row still holds `oldBox`; true when a row was updated. */
  update(id: Id, oldBox: SealedBox, newBox: SealedBox): Promise<boolean>;
  /** The additional data each row's box was sealed with (e.g. the deployment id); default none. */
  aad?: (id: Id) => string | undefined;
  batchSize?: number;
  /** Called after each batch; throwing stops the run (what is done stays done). */
  onProgress?: (progress: RotationProgress<Id>) => void | Promise<void>;
}

export async function rotateSealedColumn<Id>(
  options: RotateSealedColumnOptions<Id>,
): Promise<RotationResult> {
  const { keyring, fetchBatch, update, aad = () => undefined, onProgress } = options;
  const batchSize = options.batchSize ?? 100;
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new RangeError('batchSize must be a positive integer');
  const result: RotationResult = { scanned: 0, rotated: 0, skipped: 0, conflicts: 0 };
  let afterId: Id | null = null;
  for (;;) {
    const rows = await fetchBatch(afterId, batchSize);
    if (rows.length === 0) break;
    for (const row of rows) {
      result.scanned++;
      if (row.box === null || row.box === undefined) {
        result.skipped++;
        continue;
      }
      if (!isSealedBox(row.box)) {
        throw new SecretBoxError('malformed', `row ${String(row.id)}: not an encrypted value`);
      }
      if (!needsRotation(keyring, row.box)) {
        result.skipped++;
        continue;
      }
      let plaintext: object;
      try {
        plaintext = open<object>(keyring, row.box, aad(row.id));
      } catch (err) {
        if (err instanceof SecretBoxError) {
          throw new SecretBoxError(err.code, `row ${String(row.id)}: ${err.message}`, { cause: err });
        }
        throw err;
      }
      const fresh = seal(keyring, plaintext, aad(row.id));
      if (await update(row.id, row.box, fresh)) result.rotated++;
      else result.conflicts++;
    }
    const lastId = rows[rows.length - 1]!.id;
    if (afterId !== null && lastId === afterId) {
      throw new Error(
        'rotateSealedColumn: fetchBatch returned the same rows again (are they ordered by id?)',
      );
    }
    afterId = lastId;
    await onProgress?.({ ...result, lastId });
    if (rows.length < batchSize) break;
  }
  return result;
}

/** Anything with pg's `query(text, values)`: a pg Client or Pool (or an adapter over another driver). */
export interface SqlQueryable {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[]; rowCount: number | null }>;
}

export interface SqlSealedColumn {
  /** e.g. `deployments` */
  table: string;
  /** e.g. `db_connection_info` */
  column: string;
  /** Primary key column (default `id`); ids are handled as text. */
  idColumn?: string;
}

function ident(name: string): string {
  return name
    .split('.')
    .map((part) => `"${part.replaceAll('"', '""')}"`)
    .join('.');
}

/** `fetchBatch` and a conditional `update` over a JSONB column, for `rotateSealedColumn`. */
export function sqlSealedColumn(
  db: SqlQueryable,
  { table, column, idColumn = 'id' }: SqlSealedColumn,
): Pick<RotateSealedColumnOptions<string>, 'fetchBatch' | 'update'> {
  const [t, c, id] = [ident(table), ident(column), ident(idColumn)];
  const select = `SELECT ${id}::text AS id, ${c} AS box FROM ${t} WHERE ${c} IS NOT NULL`;
  return {
    async fetchBatch(afterId, limit) {
      const { rows } =
        afterId === null
          ? await db.query(`${select} ORDER BY ${id} LIMIT $1`, [limit])
          : await db.query(`${select} AND ${id} > $1 ORDER BY ${id} LIMIT $2`, [afterId, limit]);
      return rows as SealedRow<string>[];
    },
    async update(rowId, oldBox, newBox) {
      const { rowCount } = await db.query(
        `UPDATE ${t} SET ${c} = $3::jsonb WHERE ${id} = $1 AND ${c} = $2::jsonb`,
        [rowId, JSON.stringify(oldBox), JSON.stringify(newBox)],
      );
      return rowCount === 1;
    },
  };
}
