/**
 * How to install, build and start a project, decided from the files at the top of its folder:
 * a `coderunner.json` manifest, else a Node.js `package.json`, else a Python entry point.
 * Every error says what was looked for and what the user can add or fix.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { detectFramework, FrameworkError } from './node-frameworks';

/** What a deployment runs as (`runtime_type`): `static` is a site of files CodeRunner serves itself. */
export type RuntimeType = 'nodejs' | 'python' | 'manifest' | 'static';
/** The runtimes a deploy may ask for (`static` follows from the source, it is not asked for). */
export type RequestedRuntime = Exclude<RuntimeType, 'static'>;

/** The Node.js version a project asks for, and where it said so (for the build log). */
export interface NodeRequest {
  /** A semver range (`>=22`, `22.x`, `22.18.0`), or `lts` for the newest LTS. */
  range: string;
  /** `engines.node in package.json`, `.nvmrc`, `.node-version` */
  source: string;
}

export interface BuildPlan {
  runtime: RuntimeType;
  /** The framework detected (for the log), e.g. "Next.js". */
  framework?: string;
  /** Run once in the app folder before `build` (dependencies). */
  install?: string;
  build?: string;
  /** The long-running command; it receives PORT. Absent for a static site. */
  start?: string;
  /**
   * A static site: folders (relative to the app) where the build leaves its files, the first that
   * exists wins; CodeRunner serves them itself, with no app process.
   */
  static?: string[];
  /** The Node.js version asked for (engines.node, .nvmrc, .node-version), when any. */
  node?: NodeRequest;
  /** The port the app listens on when it cannot take PORT (manifest only). */
  port?: number;
  /** Extra environment for install, build and start. */
  env: Record<string, string>;
  /** GET this path for readiness (2xx/3xx) instead of a bare TCP connect. */
  healthcheckPath?: string;
  database?: 'postgres';
  /** When the app is started again after it exits on its own (manifest only; the engine's default otherwise). */
  restart?: RestartPolicy;
  /** After this many exits within the window the app is not restarted (manifest only). */
  restartLimit?: RestartLimit;
}

/** `on-failure`: restart after a crash (non-zero exit, a signal, out of memory); `always`: after exit 0 too. */
export type RestartPolicy = 'on-failure' | 'always' | 'never';
export const RESTART_POLICIES: readonly RestartPolicy[] = ['on-failure', 'always', 'never'];

export interface RestartLimit {
  exits: number;
  withinMinutes: number;
}

/** The project cannot be deployed as it is; the message says why and what to change. */
export class RuntimeDetectionError extends Error {
  override name = 'RuntimeDetectionError';
}

export const MANIFEST_FILE = 'coderunner.json';
const PYTHON_MARKERS = ['requirements.txt', 'pyproject.toml', 'main.py', 'app.py'];
const LOOKED_FOR = `${MANIFEST_FILE} (any runtime), package.json (Node.js), or ${PYTHON_MARKERS.join(', ')} (Python)`;

const command = (field: string) =>
  z
    .string({ error: `${field} must be a non-empty string` })
    .trim()
    .min(1, `${field} must be a non-empty string`);

const manifestSchema = z
  .strictObject(
    {
      install: command('install').optional(),
      build: command('build').optional(),
      start: command('start').optional(),
      static: z
        .string({ error: 'static must be a folder (relative to the project), e.g. "dist"' })
        .trim()
        .min(1, 'static must be a folder (relative to the project), e.g. "dist"')
        .refine((dir) => insideFolder(dir), 'static must be a folder inside the project, e.g. "dist"')
        .optional(),
      port: z
        .number({ error: 'port must be a number' })
        .int('port must be a whole number')
        .min(1, 'port must be between 1 and 65535')
        .max(65535, 'port must be between 1 and 65535')
        .optional(),
      env: z
        .record(
          z
            .string()
            .regex(
              /^[A-Za-z_][A-Za-z0-9_]*$/,
              'is not a valid variable name (letters, digits and _, not starting with a digit)',
            ),
          z.string({ error: 'must be a string (quote numbers and booleans)' }),
          // Only for env itself; the messages of its keys and values come from above.
          {
            error: (issue) =>
              issue.code === 'invalid_type' ? 'env must be an object of string values' : undefined,
          },
        )
        .optional(),
      healthcheckPath: z
        .string({ error: 'healthcheckPath must be a string' })
        .startsWith('/', 'healthcheckPath must start with "/"')
        .optional(),
      database: z
        .literal('postgres', { error: 'database must be "postgres" (the only database offered)' })
        .optional(),
      restart: z
        .enum(RESTART_POLICIES, { error: 'restart must be "on-failure", "always" or "never"' })
        .optional(),
      restartLimit: z
        .strictObject(
          {
            exits: z
              .number({ error: 'restartLimit.exits must be a number' })
              .int('restartLimit.exits must be a whole number')
              .min(1, 'restartLimit.exits must be between 1 and 100')
              .max(100, 'restartLimit.exits must be between 1 and 100'),
            withinMinutes: z
              .number({ error: 'restartLimit.withinMinutes must be a number' })
              .positive('restartLimit.withinMinutes must be more than 0')
              .max(1440, 'restartLimit.withinMinutes must be at most 1440 (a day)'),
          },
          {
            error: (issue) =>
              issue.code === 'unrecognized_keys'
                ? `restartLimit: unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')} (known: exits, withinMinutes)`
                : 'restartLimit must be an object like {"exits": 5, "withinMinutes": 10}',
          },
        )
        .optional(),
    },
    { error: `${MANIFEST_FILE} must be a JSON object` },
  )
  .check((ctx) => {
    const { start, static: dir } = ctx.value;
    if (start === undefined && dir === undefined)
      ctx.issues.push({
        code: 'custom',
        input: ctx.value,
        message:
          'start must be a non-empty string (the command that runs the app), or give "static" (the folder of a static site)',
      });
    if (start !== undefined && dir !== undefined)
      ctx.issues.push({
        code: 'custom',
        input: ctx.value,
        message: 'give "start" (an app) or "static" (a static site served by CodeRunner), not both',
      });
  });

export type Manifest = z.infer<typeof manifestSchema>;

function insideFolder(dir: string): boolean {
  const normal = path.posix.normalize(dir);
  return !normal.startsWith('/') && normal !== '..' && !normal.startsWith('../');
}

/**
 * The build plan for the project in `appDir`. With `requested`, that runtime is used (and its files
 * must be there); without it, a manifest wins over package.json, which wins over Python files.
 */
export async function detectRuntime(appDir: string, requested?: RequestedRuntime): Promise<BuildPlan> {
  const files = new Set(await fs.readdir(appDir).catch(() => [] as string[]));
  const hasManifest = files.has(MANIFEST_FILE);
  const hasPackage = files.has('package.json');
  const hasPython = PYTHON_MARKERS.some((f) => files.has(f));

  switch (requested) {
    case 'manifest':
      if (!hasManifest) throw missingFor('manifest', MANIFEST_FILE);
      return manifestPlan(appDir);
    case 'nodejs':
      if (!hasPackage) throw missingFor('nodejs', 'package.json');
      return nodePlan(appDir);
    case 'python':
      if (!hasPython) throw missingFor('python', 'requirements.txt, pyproject.toml, main.py or app.py');
      return pythonPlan(appDir, files);
    case undefined:
      break;
    default:
      throw new RuntimeDetectionError(`unknown runtime "${requested}": use nodejs, python or manifest`);
  }
  if (hasManifest) return manifestPlan(appDir);
  if (hasPackage) return nodePlan(appDir);
  if (hasPython) return pythonPlan(appDir, files);
  throw new RuntimeDetectionError(
    `cannot tell how to run this project: looked for ${LOOKED_FOR}${await layoutHint(appDir, files)}`,
  );
}

function missingFor(runtime: RuntimeType, what: string): RuntimeDetectionError {
  return new RuntimeDetectionError(`runtime ${runtime} was requested, but the project folder has no ${what}`);
}

/** The usual mistake: packing the project folder itself rather than its contents. */
async function layoutHint(appDir: string, files: Set<string>): Promise<string> {
  if (files.size === 0) return ' (the project folder is empty)';
  const [only] = [...files];
  if (files.size !== 1 || !only)
    return ` at the top of the project folder (found ${[...files].slice(0, 8).join(', ')})`;
  const stat = await fs.stat(path.join(appDir, only)).catch(() => null);
  if (!stat?.isDirectory()) return '';
  return ` at the top of the project folder; it holds only the folder "${only}": upload the contents of that folder instead`;
}

async function readJson(appDir: string, file: string): Promise<unknown> {
  const text = await fs.readFile(path.join(appDir, file), 'utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new RuntimeDetectionError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
}

async function manifestPlan(appDir: string): Promise<BuildPlan> {
  const manifest = parseManifest(await readJson(appDir, MANIFEST_FILE));
  return withoutUndefined({
    runtime: manifest.static ? 'static' : 'manifest',
    install: manifest.install,
    build: manifest.build,
    start: manifest.start,
    static: manifest.static ? [path.posix.normalize(manifest.static).replace(/(.)\/+$/, '$1')] : undefined,
    node: await nodeRequest(appDir, await readPackage(appDir)),
    port: manifest.port,
    env: manifest.env ?? {},
    healthcheckPath: manifest.healthcheckPath,
    database: manifest.database,
    restart: manifest.restart,
    restartLimit: manifest.restartLimit,
  });
}

/** Validate a parsed coderunner.json; the error lists every problem, e.g. "coderunner.json: start must be …". */
export function parseManifest(value: unknown): Manifest {
  const result = manifestSchema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    if (issue.code === 'unrecognized_keys' && issue.path.length === 0) {
      return `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')} (known: ${Object.keys(manifestSchema.shape).join(', ')})`;
    }
    // Messages name their field already, except those about one variable of env.
    const [field, key] = issue.path;
    if (field !== 'env' || key === undefined) return issue.message;
    const message =
      issue.code === 'invalid_key' ? (issue.issues[0]?.message ?? 'is not valid') : issue.message;
    return `env.${String(key)} ${message}`;
  });
  const message = problems.join('; ');
  throw new RuntimeDetectionError(
    message.startsWith(MANIFEST_FILE) ? message : `${MANIFEST_FILE}: ${message}`,
  );
}

const packageSchema = z.looseObject({
  main: z.string().optional().catch(undefined),
  scripts: z.record(z.string(), z.unknown()).optional().catch(undefined),
  engines: z
    .looseObject({ node: z.string().optional().catch(undefined) })
    .optional()
    .catch(undefined),
});
type PackageJson = z.infer<typeof packageSchema>;

/** package.json when there is one (for a manifest's project: only its engines matter). */
async function readPackage(appDir: string): Promise<PackageJson | undefined> {
  if (!(await exists(appDir, 'package.json'))) return undefined;
  const parsed = packageSchema.safeParse(await readJson(appDir, 'package.json'));
  return parsed.success ? parsed.data : undefined;
}

/** nvm's names of LTS lines (`lts/jod` in .nvmrc). */
const LTS_NAMES: Record<string, number> = {
  argon: 4,
  boron: 6,
  carbon: 8,
  dubnium: 10,
  erbium: 12,
  fermium: 14,
  gallium: 16,
  hydrogen: 18,
  iron: 20,
  jod: 22,
  krypton: 24,
};

/**
 * The Node.js version the project asks for: `.node-version`, else `.nvmrc` (nvm's forms: `22`,
 * `v22.18.0`, `lts/*`, `lts/jod`, `node`), else package.json's `engines.node`.
 */
async function nodeRequest(appDir: string, pkg: PackageJson | undefined): Promise<NodeRequest | undefined> {
  for (const file of ['.node-version', '.nvmrc']) {
    const text = await fs.readFile(path.join(appDir, file), 'utf8').catch(() => null);
    const line = text
      ?.split('\n')
      .map((l) => l.replace(/#.*$/, '').trim())
      .find((l) => l !== '');
    if (!line) continue;
    const word = line.toLowerCase();
    if (word === 'lts/*' || word === 'lts') return { range: 'lts', source: file };
    if (word === 'node' || word === 'latest' || word === 'current' || word === 'stable')
      return { range: '*', source: file };
    if (word.startsWith('lts/')) {
      const major = LTS_NAMES[word.slice(4)];
      if (!major)
        throw new RuntimeDetectionError(
          `${file}: unknown LTS name "${line}" (known: ${Object.keys(LTS_NAMES).join(', ')}); write a version such as 22`,
        );
      return { range: `${major}.x`, source: file };
    }
    return { range: line.replace(/^v(?=\d)/, ''), source: file };
  }
  const engines = pkg?.engines?.node?.trim();
  if (engines) return { range: engines, source: 'engines.node in package.json' };
  return undefined;
}

const DEPENDENCY_FIELDS = [
  'dependencies',
  'devDependencies',
  'optionalDependencies',
  'peerDependencies',
] as const;
const asRecord = (v: unknown): Record<string, unknown> =>
  v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

async function nodePlan(appDir: string): Promise<BuildPlan> {
  const parsed = packageSchema.safeParse(await readJson(appDir, 'package.json'));
  if (!parsed.success) throw new RuntimeDetectionError('package.json must be a JSON object');
  const pkg = parsed.data;
  const scripts: Record<string, string> = {};
  for (const [name, value] of Object.entries(pkg.scripts ?? {}))
    if (typeof value === 'string' && value.trim() !== '') scripts[name] = value.trim();
  const script = (name: string) => scripts[name] !== undefined;
  const locked = (await exists(appDir, 'package-lock.json')) || (await exists(appDir, 'npm-shrinkwrap.json'));
  // `npm install` of nothing still costs about half a second (over half of a small deploy): skip it
  // when package.json declares no dependency of any kind and no install hook.
  const declaresSomething =
    DEPENDENCY_FIELDS.some((f) => Object.keys(asRecord(pkg[f])).length > 0) ||
    ['preinstall', 'install', 'postinstall', 'prepare'].some(script);
  const deps = new Set(['dependencies', 'devDependencies'].flatMap((f) => Object.keys(asRecord(pkg[f]))));
  const framework = await detectFramework(appDir, { scripts, deps }).catch((err: Error) => {
    throw err instanceof FrameworkError ? new RuntimeDetectionError(err.message) : err;
  });
  const build = [script('build') ? 'npm run build' : undefined, framework?.build]
    .filter(Boolean)
    .join(' && ');
  let start = framework?.start;
  let staticDirs = framework?.static;
  if (!start && !staticDirs) {
    if (script('start')) start = 'npm start';
    else {
      const entry = await nodeEntry(appDir, pkg.main).catch((err: Error) => {
        // No server, but a build: its output may be a static site (checked after the build).
        if (script('build')) return null;
        throw err;
      });
      if (entry === null) staticDirs = ['dist', 'build', 'out'];
      else start = `node ${shellWord(entry)}`;
    }
  }
  return withoutUndefined({
    runtime: staticDirs ? 'static' : 'nodejs',
    framework: framework?.name,
    install:
      declaresSomething || locked ? `${locked ? 'npm ci' : 'npm install'} --no-audit --no-fund` : undefined,
    build: build || undefined,
    start,
    static: staticDirs,
    node: await nodeRequest(appDir, pkg),
    env: {},
  });
}

/** Without a start script: package.json's `main`, else server.js, else index.js. */
async function nodeEntry(appDir: string, main: string | undefined): Promise<string> {
  if (main !== undefined && main.trim() !== '') {
    const entry = path.posix.normalize(main.trim());
    if (entry.startsWith('/') || entry === '..' || entry.startsWith('../')) {
      throw new RuntimeDetectionError(
        `package.json: main "${main}" must be a path inside the project folder`,
      );
    }
    // Node resolves `main` like require(): as given, with .js, or as a folder's index.js.
    for (const candidate of [entry, `${entry}.js`, `${entry}/index.js`]) {
      if (await isFile(path.join(appDir, candidate))) return entry;
    }
    throw new RuntimeDetectionError(
      `package.json: main "${main}" does not exist in the project folder; fix it or add a "start" script`,
    );
  }
  for (const candidate of ['server.js', 'index.js']) {
    if (await isFile(path.join(appDir, candidate))) return candidate;
  }
  throw new RuntimeDetectionError(
    'package.json has no "start" script and no "main", and there is no server.js or index.js: ' +
      'add "scripts": { "start": "node <your entry file>" } to package.json',
  );
}

async function pythonPlan(appDir: string, files: Set<string>): Promise<BuildPlan> {
  const hasPyproject = files.has('pyproject.toml');
  const requirements = files.has('requirements.txt')
    ? (await fs.readFile(path.join(appDir, 'requirements.txt'), 'utf8'))
        .split('\n')
        .map((line) => line.replace(/(^|\s)#.*$/, '').trim())
        .filter((line) => line !== '')
    : [];
  const entry = ['main.py', 'app.py'].find((f) => files.has(f));
  if (!entry) {
    const found = PYTHON_MARKERS.filter((f) => files.has(f)).join(' and ');
    throw new RuntimeDetectionError(
      `found ${found} but no main.py or app.py to start: add one, or give the start command in ${MANIFEST_FILE}`,
    );
  }
  // A venv only when there is something to install: the system interpreter starts faster and needs no pip.
  const venv = requirements.length > 0 || hasPyproject;
  let install: string | undefined;
  if (venv) {
    const target = requirements.length > 0 ? '-r requirements.txt' : '.';
    install = `python3 -m venv .venv && .venv/bin/pip install --no-input ${target}`;
  }
  return withoutUndefined({
    runtime: 'python',
    install,
    start: `${venv ? '.venv/bin/python' : 'python3'} ${entry}`,
    // Print as it happens: otherwise Python buffers stdout when it is not a terminal and logs lag.
    env: { PYTHONUNBUFFERED: '1' },
  });
}

async function exists(appDir: string, file: string): Promise<boolean> {
  return fs.access(path.join(appDir, file)).then(
    () => true,
    () => false,
  );
}

async function isFile(file: string): Promise<boolean> {
  return (await fs.stat(file).catch(() => null))?.isFile() ?? false;
}

/** Quote for /bin/sh only when needed, so that plain names read naturally in logs. */
function shellWord(word: string): string {
  return /^[\w./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
