import pg from 'pg';

/**
 * A readable text snapshot of everything the schema defines in `public`: columns (order, type,
 * nullability, default), constraints (with delete rules), indexes, enum labels in order, functions
 * (whole body), triggers, and every relation. Two snapshots are compared line by line.
 */
export async function snapshotSchema(
  url: string,
  opts: { excludeTables?: string[] } = {},
): Promise<string[]> {
  const exclude = opts.excludeTables ?? [];
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  try {
    const q = async (sql: string) => (await client.query(sql, [exclude])).rows as Record<string, unknown>[];
    const lines: string[] = [];
    for (const r of await q(`
      SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND NOT (c.relname = ANY($1)) ORDER BY c.relname`))
      lines.push(`relation ${r.relname} kind=${r.relkind}`);
    for (const r of await q(`
      SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
             pg_get_expr(d.adbin, d.adrelid) AS dflt
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
        AND NOT (c.relname = ANY($1))
      ORDER BY c.relname, a.attnum`))
      lines.push(
        `column ${r.relname}#${r.attnum} ${r.attname} ${r.type}${r.attnotnull ? ' NOT NULL' : ''}${r.dflt ? ` DEFAULT ${r.dflt}` : ''}`,
      );
    for (const r of await q(`
      SELECT c.relname, con.conname, con.contype, pg_get_constraintdef(con.oid) AS def
      FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND NOT (c.relname = ANY($1)) ORDER BY c.relname, con.conname`))
      lines.push(`constraint ${r.relname}.${r.conname} ${r.contype} ${r.def}`);
    for (const r of await q(`
      SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND NOT (tablename = ANY($1))
      ORDER BY indexname`))
      lines.push(`index ${r.indexname}: ${r.indexdef}`);
    for (const r of await q(`
      SELECT t.typname, string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) AS labels
      FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid JOIN pg_namespace n ON n.oid = t.typnamespace
      WHERE n.nspname = 'public' AND cardinality($1::text[]) >= 0 GROUP BY t.typname ORDER BY t.typname`))
      lines.push(`enum ${r.typname}: ${r.labels}`);
    for (const r of await q(`
      SELECT p.proname, pg_get_functiondef(p.oid) AS def FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
      WHERE n.nspname = 'public' AND cardinality($1::text[]) >= 0 ORDER BY p.proname`))
      lines.push(`function ${r.proname}: ${String(r.def).replaceAll('\n', '\\n')}`);
    for (const r of await q(`
      SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid) AS def
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND NOT t.tgisinternal AND NOT (c.relname = ANY($1)) ORDER BY t.tgname`))
      lines.push(`trigger ${r.tgname}: ${r.def}`);
    for (const r of await q(`
      SELECT t.typname, t.typtype FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
      WHERE n.nspname = 'public' AND t.typtype NOT IN ('c', 'b') AND NOT (t.typname = ANY($1))
      ORDER BY t.typname`))
      lines.push(`type ${r.typname} ${r.typtype}`);
    return lines;
  } finally {
    await client.end();
  }
}

/** A unified-ish diff of two snapshots: lines only in `a` prefixed "-", only in `b` prefixed "+". */
export function diffSnapshots(a: string[], b: string[], labels: [string, string]): string {
  const setA = new Set(a);
  const setB = new Set(b);
  const out = [
    ...a.filter((l) => !setB.has(l)).map((l) => `- ${l}`),
    ...b.filter((l) => !setA.has(l)).map((l) => `+ ${l}`),
  ];
  if (!out.length) {
    // same lines, different order (e.g. column order is part of each line, so this is rare)
    if (a.join('\n') === b.join('\n')) return '';
    return `same objects, different order between ${labels[0]} and ${labels[1]}`;
  }
  return `--- ${labels[0]}\n+++ ${labels[1]}\n${out.join('\n')}`;
}
