/**
 * The rules for a project's environment variables, shared by the API (which enforces them) and the
 * CLI (which checks them before sending, with the same messages). Plain functions: no Node import, so
 * the client bundles carry it as is.
 *
 * - names are POSIX names: a letter or `_`, then letters, digits and `_` (case matters);
 * - the platform's own names are refused (`PORT`, the database's, `HOME`, `PATH`, `CODERUNNER_*`);
 * - values are strings without NUL, at most 32 KiB each;
 * - at most 100 variables, 64 KiB in all (names and values, UTF-8).
 * Messages name the variable and say what to do; they never contain a value.
 */

export const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Set by the platform for every app (or every app with a database): a user cannot choose them. */
export const RESERVED_ENV_NAMES: readonly string[] = [
  'PORT',
  'DATABASE_URL',
  'PGHOST',
  'PGPORT',
  'PGUSER',
  'PGPASSWORD',
  'PGDATABASE',
  'HOME',
  'PATH',
];
/** Every name starting with this is the platform's (sandbox markers, future settings). */
export const RESERVED_ENV_PREFIX = 'CODERUNNER_';
export const ENV_LIMITS = {
  /** Largest value, in UTF-8 bytes. */
  valueBytes: 32 * 1024,
  /** Most variables a project (or a deployment's snapshot) holds. */
  count: 100,
  /** Names and values together, in UTF-8 bytes. */
  totalBytes: 64 * 1024,
} as const;
/** What a masked value reads as: the same for every value, so it tells nothing of it. */
export const ENV_MASK = '••••••';

const utf8Bytes = (s: string) => new TextEncoder().encode(s).length;

/** A name as it may be shown in a message: as is when valid, else quoted with escapes. */
function shown(name: string): string {
  return ENV_NAME_PATTERN.test(name)
    ? name
    : JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}…` : name);
}

/** Why `name` cannot be used, or null when it can. */
export function envNameProblem(name: string): string | null {
  if (!ENV_NAME_PATTERN.test(name)) {
    return `${shown(name)} is not a valid variable name: use letters, digits and _, not starting with a digit`;
  }
  if (RESERVED_ENV_NAMES.includes(name) || name.startsWith(RESERVED_ENV_PREFIX)) {
    return `${name} is set by the platform; choose another name`;
  }
  return null;
}

/** Why `value` cannot be the value of `name`, or null when it can. */
export function envValueProblem(name: string, value: unknown): string | null {
  if (typeof value !== 'string') return `${shown(name)}: the value must be a string`;
  if (value.includes('\u0000')) return `${shown(name)}: the value must not contain NUL characters`;
  const bytes = utf8Bytes(value);
  if (bytes > ENV_LIMITS.valueBytes) {
    return `${shown(name)}: the value is ${bytes} bytes; the limit is ${ENV_LIMITS.valueBytes} (32 KiB)`;
  }
  return null;
}

/** The first problem of one `name=value` pair (name first), or null. */
export function envVarProblem(name: string, value: unknown): string | null {
  return envNameProblem(name) ?? envValueProblem(name, value);
}

/** Why a whole set of variables (a project's, or a deployment's snapshot) cannot be kept, or null. */
export function envSetProblem(vars: Record<string, unknown>): string | null {
  const entries = Object.entries(vars);
  for (const [name, value] of entries) {
    const problem = envVarProblem(name, value);
    if (problem) return problem;
  }
  if (entries.length > ENV_LIMITS.count) {
    return `at most ${ENV_LIMITS.count} variables are allowed; this would make ${entries.length} (unset some first)`;
  }
  const total = entries.reduce((n, [name, value]) => n + utf8Bytes(name) + utf8Bytes(value as string), 0);
  if (total > ENV_LIMITS.totalBytes) {
    return `the variables would take ${total} bytes in all; the limit is ${ENV_LIMITS.totalBytes} (64 KiB)`;
  }
  return null;
}

/** `value` as a listing shows it without reveal. */
export function maskEnvValue(_value: string): string {
  return ENV_MASK;
}

/** `KEY=VALUE` (as typed after `--env` or `env set`) split at the first `=`; null without one. */
export function splitEnvAssignment(text: string): { name: string; value: string } | null {
  const eq = text.indexOf('=');
  if (eq < 0) return null;
  return { name: text.slice(0, eq), value: text.slice(eq + 1) };
}
