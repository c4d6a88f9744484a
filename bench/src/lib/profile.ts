/**
 * Reads a V8 .cpuprofile (node --cpu-prof) and attributes the samples taken inside a time window:
 * self time by package, the top self-time functions, and our own code (files of this repository,
 * outside node_modules) by self and by total (inclusive) time.
 */
import fs from 'node:fs';
import { SourceMap } from 'node:module';
import os from 'node:os';
import path from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

/**
 * tsx runs our TypeScript as one-line transpiled code, so profile positions are columns of line 0.
 * tsx caches each transpiled file with its source map (<tmp>/tsx-<uid>/): the newest entry for a
 * source maps a position back to the TypeScript line.
 */
function tsxSourceMaps(): (file: string, line: number, column: number) => number | null {
  const dir = path.join(os.tmpdir(), `tsx-${process.getuid?.() ?? 0}`);
  const maps = new Map<string, { mtime: number; map: SourceMap }>();
  try {
    for (const name of fs.readdirSync(dir)) {
      const full = path.join(dir, name);
      const stat = fs.statSync(full);
      if (!stat.isFile() || stat.size > 5_000_000) continue;
      const text = fs.readFileSync(full, 'utf8');
      const source = /"sources":\["([^"]+)"\]/.exec(text.slice(-2_000))?.[1];
      if (!source || (maps.get(source)?.mtime ?? 0) > stat.mtimeMs) continue;
      try {
        const entry = JSON.parse(text) as { map?: ConstructorParameters<typeof SourceMap>[0] };
        if (entry.map) maps.set(source, { mtime: stat.mtimeMs, map: new SourceMap(entry.map) });
      } catch {
        // not a cache entry
      }
    }
  } catch {
    // no cache: positions stay as they are
  }
  return (file, line, column) => {
    const found = maps.get(file)?.map.findEntry(line, column) as { originalLine?: number } | undefined;
    return found?.originalLine ?? null;
  };
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface FunctionCost {
  name: string;
  where: string;
  category: string;
  selfMs: number;
  selfPct: number;
  totalMs?: number;
  totalPct?: number;
}

export interface ProfileReport {
  windowMs: number;
  busyMs: number;
  idlePct: number;
  categories: { category: string; selfMs: number; pct: number }[];
  /** Self time with node built-ins and native frames charged to the nearest package (or ours) calling them. */
  attributed: { category: string; pct: number }[];
  /** Inclusive: share of busy samples whose stack holds a frame of the package. */
  inclusive: { category: string; pct: number }[];
  topSelf: FunctionCost[];
  oursBySelf: FunctionCost[];
  oursByTotal: FunctionCost[];
}

const SPECIAL = new Set(['(idle)', '(program)', '(garbage collector)', '(root)']);

/** "pino-http", "@trpc/server", "node:internal", "ours: packages/api", "(garbage collector)"… */
export function categorize(frame: CallFrame, repoRoot: string): string {
  if (SPECIAL.has(frame.functionName) && !frame.url) return frame.functionName;
  const url = frame.url.replace(/^file:\/\//, '');
  if (!url) return '(native/V8)';
  if (url.startsWith('node:')) return 'node (built-ins)';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm !== -1) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (url.startsWith(repoRoot)) {
    const rel = url.slice(repoRoot.length + 1).split('/');
    return `ours: ${rel.slice(0, 2).join('/')}`;
  }
  return '(other)';
}

export function analyzeProfile(
  file: string,
  repoRoot: string,
  window: { startUs: number; endUs: number } | null,
  top = 15,
): ProfileReport {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const keyOf = (f: CallFrame) =>
    `${f.functionName || '(anonymous)'}|${f.url}|${f.lineNumber}:${f.columnNumber}`;
  const original = tsxSourceMaps();

  // Sample i was taken at startTime + sum(timeDeltas[0..i]); it stands for the time until the next one.
  let t = profile.startTime;
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  const frames = new Map<string, CallFrame>();
  let windowUs = 0;
  let idleUs = 0;
  const attributed = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const isLibrary = (c: string) => !c.startsWith('(') && c !== 'node (built-ins)';
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    const dt = profile.timeDeltas[i + 1] ?? 0;
    if (window && (t < window.startUs || t > window.endUs)) continue;
    windowUs += dt;
    const leaf = byId.get(profile.samples[i]!);
    if (!leaf) continue;
    if (leaf.callFrame.functionName === '(idle)') {
      idleUs += dt;
      continue;
    }
    const k = keyOf(leaf.callFrame);
    frames.set(k, leaf.callFrame);
    self.set(k, (self.get(k) ?? 0) + dt);
    let charged: string | undefined;
    const cats = new Set<string>();
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const c = categorize(byId.get(id)!.callFrame, repoRoot);
      cats.add(c);
      if (!charged && isLibrary(c)) charged = c;
    }
    const leafCat = categorize(leaf.callFrame, repoRoot);
    const chargeTo = leafCat.startsWith('(') && leafCat !== '(native/V8)' ? leafCat : (charged ?? leafCat);
    attributed.set(chargeTo, (attributed.get(chargeTo) ?? 0) + dt);
    for (const c of cats) if (isLibrary(c)) inclusive.set(c, (inclusive.get(c) ?? 0) + dt);
    const seen = new Set<string>();
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const node = byId.get(id)!;
      const nk = keyOf(node.callFrame);
      if (seen.has(nk)) continue;
      seen.add(nk);
      frames.set(nk, node.callFrame);
      total.set(nk, (total.get(nk) ?? 0) + dt);
    }
  }
  const busyUs = windowUs - idleUs;
  const pct = (us: number) => Math.round((us / busyUs) * 1000) / 10;
  const toCost = (k: string, withTotal: boolean): FunctionCost => {
    const f = frames.get(k)!;
    const file = f.url.replace(/^file:\/\//, '');
    let line = f.lineNumber + 1;
    let code = '';
    if (file.startsWith(repoRoot) && !file.includes('/node_modules/')) {
      const mapped = original(file, f.lineNumber, f.columnNumber);
      if (mapped !== null) {
        line = mapped + 1;
        try {
          code = fs.readFileSync(file, 'utf8').split('\n')[mapped]?.trim().slice(0, 70) ?? '';
        } catch {
          // moved meanwhile
        }
      }
    }
    const where = f.url
      ? `${file.replace(`${repoRoot}/`, '').replace(/^.*\/node_modules\//, '')}:${line}${code ? ` \`${code.replaceAll('`', "'").replaceAll('|', '\\|')}\`` : ''}`
      : '';
    const cost: FunctionCost = {
      name: f.functionName || '(anonymous)',
      where,
      category: categorize(f, repoRoot),
      selfMs: (self.get(k) ?? 0) / 1000,
      selfPct: pct(self.get(k) ?? 0),
    };
    if (withTotal) {
      cost.totalMs = (total.get(k) ?? 0) / 1000;
      cost.totalPct = pct(total.get(k) ?? 0);
    }
    return cost;
  };
  const cats = new Map<string, number>();
  for (const [k, us] of self) {
    const c = categorize(frames.get(k)!, repoRoot);
    cats.set(c, (cats.get(c) ?? 0) + us);
  }
  const isOurs = (k: string) => categorize(frames.get(k)!, repoRoot).startsWith('ours:');
  const selfSorted = [...self.keys()].sort((a, b) => self.get(b)! - self.get(a)!);
  return {
    windowMs: windowUs / 1000,
    busyMs: busyUs / 1000,
    idlePct: Math.round((idleUs / windowUs) * 1000) / 10,
    categories: [...cats.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([category, us]) => ({ category, selfMs: us / 1000, pct: pct(us) })),
    attributed: [...attributed.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([category, us]) => ({ category, pct: pct(us) })),
    inclusive: [...inclusive.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([category, us]) => ({ category, pct: pct(us) })),
    topSelf: selfSorted.slice(0, top).map((k) => toCost(k, false)),
    oursBySelf: selfSorted
      .filter(isOurs)
      .slice(0, top)
      .map((k) => toCost(k, true)),
    oursByTotal: [...total.keys()]
      .filter(isOurs)
      .sort((a, b) => total.get(b)! - total.get(a)!)
      .slice(0, top)
      .map((k) => toCost(k, true)),
  };
}
