/** Percentile by linear interpolation between closest ranks (p in 0..100). */
export function percentile(values: number[], p: number): number {
  if (!values.length) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (rank - lo);
}

export const median = (values: number[]) => percentile(values, 50);

/** 1234.5 → "1,235"; small numbers keep a few significant digits. */
export function fmt(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return 'n/a';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Milliseconds with 2 decimals under 10, 1 under 100, none above. */
export function ms(n: number): string {
  if (!Number.isFinite(n)) return 'n/a';
  return `${fmt(n, n < 10 ? 2 : n < 100 ? 1 : 0)} ms`;
}

export function seconds(msValue: number): string {
  return `${fmt(msValue / 1000, msValue < 10_000 ? 2 : 1)} s`;
}

export function ratio(a: number, b: number): number {
  return Math.round((a / b) * 100) / 100;
}
