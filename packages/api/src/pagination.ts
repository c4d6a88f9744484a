import { z } from 'zod';

/**
 * Keyset pagination over (created_at DESC, id DESC). The cursor carries the row's created_at at
 * PostgreSQL's microsecond precision (a JS Date would round it and skip or repeat rows) and its id.
 */
export interface Cursor {
  createdAt: string;
  id: string;
}

export const cursorSchema = z
  .string()
  .max(200)
  .transform((value, ctx): Cursor => {
    try {
      const [createdAt, id] = Buffer.from(value, 'base64url').toString('utf8').split('|');
      if (
        createdAt &&
        id &&
        /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z$/.test(createdAt) &&
        // A real instant PostgreSQL takes (9999-99-99 or year 0 would fail the query: a 500).
        validInstant(createdAt) &&
        z.uuid().safeParse(id).success
      ) {
        return { createdAt, id };
      }
    } catch {
      // fall through
    }
    ctx.addIssue({ code: 'custom', message: 'is not a cursor returned by this list' });
    return z.NEVER;
  });

function validInstant(text: string): boolean {
  const ms = Date.parse(text);
  // Date.parse rolls 2024-02-30 over to March: the text must name the day it parses to.
  return (
    Number.isFinite(ms) &&
    ms >= Date.UTC(1970, 0, 1) &&
    new Date(ms).toISOString().slice(0, 19) === text.slice(0, 19)
  );
}

export const encodeCursor = (c: Cursor) => Buffer.from(`${c.createdAt}|${c.id}`).toString('base64url');

/** SQL selecting created_at as the cursor's text form. */
export const CURSOR_TS_SQL = `to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

export const pageInput = {
  cursor: cursorSchema.nullish(),
  limit: z.number().int().min(1).max(100).default(20),
};

/** A page of `limit` rows from a query that fetched `limit + 1`: the extra row says there is more. */
export function toPage<Row extends { id: string; cursorTs: string }, Item>(
  rows: Row[],
  limit: number,
  toItem: (row: Row) => Item,
): { items: Item[]; nextCursor: string | null } {
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return {
    items: page.map(toItem),
    nextCursor: rows.length > limit && last ? encodeCursor({ createdAt: last.cursorTs, id: last.id }) : null,
  };
}
