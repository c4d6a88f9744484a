import path from 'node:path';
import {
  API_CONFIG_VARIABLES,
  type ApiConfig,
  apiConfigFromEnv,
  backupsKeptFromEnv,
  DEFAULT_MAX_FILES,
  DEFAULT_MAX_UPLOAD_MB,
  DEFAULT_RESTARTS,
  type RuntimeConfig,
  UNISOLATED_OPEN_SIGNUP_ACCEPTANCE,
  UNISOLATED_OPEN_SIGNUP_VARIABLE,
} from '@coderunner/api';
import { defaultDataDir } from '@coderunner/db';
import {
  APPS_ADDRESS,
  DEFAULT_BUILD_SLOTS_DIR,
  DEFAULT_LIMITS,
  defaultBuildSlots,
  defaultCpuReserve,
  hostCpus,
  isAppsAddress,
  MIN_TENANT_CPUS,
  parseUidRange,
  type ResourceLimits,
  tenantCpuBudget,
} from '@coderunner/sandbox';
import { z } from 'zod';

const port = (name: string) =>
  z.coerce
    .number({ error: `${name} must be a port number` })
    .int(`${name} must be a whole number`)
    .min(0, `${name} must be between 0 and 65535`)
    .max(65535, `${name} must be between 0 and 65535`);

const limits = (name: string) =>
  z
    .string()
    .regex(
      /^\d+\/\d+\/\d+(\.\d+)?(\/\d+)?$/,
      `${name} must be MEMORY_MB/PROCESSES/CPUS[/DISK_MB], e.g. 256/128/0.5/1024`,
    );

/** `256/128/0.5/1024` → resource limits of a sandbox (a private /tmp of a quarter of its memory, ≤ 256 MB). */
export function parseLimits(text: string) {
  const [memoryMb, pids, cpus, diskMb] = text.split('/').map(Number) as [number, number, number, number?];
  return { memoryMb, pids, cpus, diskMb: diskMb ?? 1024, tmpMb: Math.min(256, Math.max(16, memoryMb / 4)) };
}

/** Resource limits → `MEMORY_MB/PROCESSES/CPUS/DISK_MB`, as the CODERUNNER_LIMITS_* variables take them. */
export function formatLimits(limits: ResourceLimits): string {
  return `${limits.memoryMb}/${limits.pids}/${limits.cpus}/${limits.diskMb}`;
}

export const PLANS = ['free', 'personal', 'team'] as const;
export type Plan = (typeof PLANS)[number];

/** Each plan's limits unless configured; the free plan's are the sandbox's own defaults. */
export const DEFAULT_PLAN_LIMITS: Record<Plan, string> = {
  free: formatLimits(DEFAULT_LIMITS),
  personal: '512/256/1/2048',
  team: '1024/512/2/4096',
};

/** Each plan's build time limit (minutes, install and build together) and build cache cap (MB). */
export const DEFAULT_PLAN_BUILD: Record<Plan, string> = {
  free: '10/1024',
  personal: '20/2048',
  team: '30/4096',
};
/** Memory (MB) and CPUs of an install or build, whatever the plan (a plan with more keeps its own). */
export const DEFAULT_BUILD_LIMITS = '2048/1';

const buildLimits = (name: string) =>
  z.string().regex(/^\d+\/\d+(\.\d+)?$/, `${name} must be MEMORY_MB/CPUS, e.g. 2048/1`);
const planBuild = (name: string) =>
  z.string().regex(/^\d+(\.\d+)?\/\d+$/, `${name} must be MINUTES/CACHE_MB, e.g. 10/1024`);
const planBuildVariable = (plan: Plan) =>
  `CODERUNNER_BUILD_LIMITS_${plan.toUpperCase() as Uppercase<Plan>}` as const;

const planVariable = (plan: Plan) => `CODERUNNER_LIMITS_${plan.toUpperCase() as Uppercase<Plan>}` as const;

/** A comma-separated list (entries trimmed, empty ones dropped); unset is the empty list. */
const commaList = z
  .string()
  .default('')
  .transform((v) =>
    v
      .split(',')
      .map((o) => o.trim())
      .filter(Boolean),
  );

const schema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  PORT: port('PORT').default(8080),
  HOST: z
    .string()
    .min(1)
    .refine((host) => !isAppsAddress(host), {
      error: `HOST must not be ${APPS_ADDRESS}: that address is reserved for apps (they would share the dashboard's cookies)`,
    })
    .default('127.0.0.1'),
  DATABASE_URL: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'DATABASE_URL must start with postgres:// or postgresql://')
    .optional(),
  CODERUNNER_DATA_DIR: z.string().min(1).optional(),
  CODERUNNER_EMBEDDED_PG_PORT: port('CODERUNNER_EMBEDDED_PG_PORT').default(54329),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Milliseconds in-flight requests get to finish on SIGTERM before their connections are cut. */
  SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(0).default(10_000),
  /** Comma-separated browser origins allowed by CORS (`*` for any). */
  CORS_ORIGINS: commaList,
  /** Largest JSON request body, in KiB. */
  CODERUNNER_MAX_JSON_KB: z.coerce.number().int().min(1).default(1024),
  /** Largest deployment upload (deployments.create only), in MiB. */
  CODERUNNER_MAX_UPLOAD_MB: z.coerce.number().int().min(1).default(DEFAULT_MAX_UPLOAD_MB),
  /** Most files an uploaded archive may hold. */
  CODERUNNER_MAX_FILES: z.coerce.number().int().min(1).default(DEFAULT_MAX_FILES),
  SANDBOX_PROVIDER: z.enum(['local', 'agentsphere']).default('local'),
  /** Base of the apps' public URLs: http://<deployment id>.<host>:<port>/ (default http://localhost:<PORT>). */
  CODERUNNER_APPS_BASE_URL: z.url('CODERUNNER_APPS_BASE_URL must be a URL').optional(),
  WORKER_ENABLED: z
    .enum(['true', 'false', '1', '0'], { error: 'WORKER_ENABLED must be true or false' })
    .default('true')
    .transform((v) => v === 'true' || v === '1'),
  WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(64).default(2),
  CODERUNNER_INSTALL_TIMEOUT_S: z.coerce.number().int().min(1).default(600),
  CODERUNNER_BUILD_TIMEOUT_S: z.coerce.number().int().min(1).default(600),
  CODERUNNER_START_TIMEOUT_S: z.coerce.number().int().min(1).default(30),
  /** A PROVISIONING/BUILDING deployment without a worker heartbeat for this long is retried. */
  CODERUNNER_STUCK_AFTER_S: z.coerce.number().int().min(2).default(60),
  /** How many times a build whose worker died is started again before the deployment FAILS. */
  CODERUNNER_BUILD_RETRIES: z.coerce.number().int().min(0).max(100).default(1),
  CODERUNNER_RECONCILE_INTERVAL_S: z.coerce.number().int().min(1).default(15),
  /** Pauses before an app that exited is started again (ms, comma-separated; the last repeats). */
  CODERUNNER_RESTART_BACKOFF_MS: z
    .string()
    .regex(
      /^\d+(,\d+)*$/,
      'CODERUNNER_RESTART_BACKOFF_MS must be milliseconds separated by commas, e.g. 1000,2000,4000',
    )
    .default(DEFAULT_RESTARTS.backoffMs.join(','))
    .transform((v) => v.split(',').map(Number)),
  /** An app that exits this many times within CODERUNNER_RESTART_WINDOW_S is not restarted (the manifest may say otherwise). */
  CODERUNNER_RESTART_MAX_EXITS: z.coerce.number().int().min(1).max(100).default(DEFAULT_RESTARTS.maxExits),
  CODERUNNER_RESTART_WINDOW_S: z.coerce
    .number()
    .int()
    .min(1)
    .max(86_400)
    .default(DEFAULT_RESTARTS.windowMs / 1000),
  /** How long a deployment replaced by a redeploy keeps serving requests in flight before it is stopped. */
  CODERUNNER_REDEPLOY_DRAIN_S: z.coerce.number().min(0).max(3600).default(30),
  /** Tenant isolation of the local provider: auto (when this machine can), sandbox (required), none. */
  CODERUNNER_ISOLATION: z
    .enum(['auto', 'sandbox', 'none'], { error: 'CODERUNNER_ISOLATION must be auto, sandbox or none' })
    .default('auto'),
  /**
   * Without isolation sign-up closes after the first account (each account could read the others');
   * only this exact value, which says the risk, keeps it open.
   */
  [UNISOLATED_OPEN_SIGNUP_VARIABLE]: z
    .literal(UNISOLATED_OPEN_SIGNUP_ACCEPTANCE, {
      error: `${UNISOLATED_OPEN_SIGNUP_VARIABLE} takes only the value ${UNISOLATED_OPEN_SIGNUP_ACCEPTANCE} (it lets anyone sign up while deployed apps can read each other); unset it to keep sign-up closed after the first account`,
    })
    .optional(),
  /** Uids (and gids) handed to isolated sandboxes, one each: FIRST-LAST. */
  CODERUNNER_SANDBOX_UIDS: z
    .string()
    .regex(/^\d+-\d+$/, 'CODERUNNER_SANDBOX_UIDS must be FIRST-LAST, e.g. 3000000-3099999')
    .default('3000000-3099999'),
  /** Limits of a sandbox by its owner's plan: MEMORY_MB/PROCESSES/CPUS[/DISK_MB]. */
  CODERUNNER_LIMITS_FREE: limits('CODERUNNER_LIMITS_FREE').default(DEFAULT_PLAN_LIMITS.free),
  CODERUNNER_LIMITS_PERSONAL: limits('CODERUNNER_LIMITS_PERSONAL').default(DEFAULT_PLAN_LIMITS.personal),
  CODERUNNER_LIMITS_TEAM: limits('CODERUNNER_LIMITS_TEAM').default(DEFAULT_PLAN_LIMITS.team),
  /** Memory and CPUs of installs and builds: MEMORY_MB/CPUS (CPUs clamped like the plans'). */
  CODERUNNER_BUILD_LIMITS: buildLimits('CODERUNNER_BUILD_LIMITS').default(DEFAULT_BUILD_LIMITS),
  /** Builds at once on this machine; default: half its memory over the build memory, at most its CPUs. */
  CODERUNNER_BUILD_SLOTS: z.coerce.number().int().min(1).max(1024).optional(),
  /**
   * Where the build slots are kept, shared by every server on this machine. Default: a folder of the
   * machine's when the server runs as root (as it must to isolate apps), else one in its data folder.
   */
  CODERUNNER_BUILD_SLOTS_DIR: z.string().min(1).optional(),
  /** Build time limit and build cache cap by plan: MINUTES/CACHE_MB. */
  CODERUNNER_BUILD_LIMITS_FREE: planBuild('CODERUNNER_BUILD_LIMITS_FREE').default(DEFAULT_PLAN_BUILD.free),
  CODERUNNER_BUILD_LIMITS_PERSONAL: planBuild('CODERUNNER_BUILD_LIMITS_PERSONAL').default(
    DEFAULT_PLAN_BUILD.personal,
  ),
  CODERUNNER_BUILD_LIMITS_TEAM: planBuild('CODERUNNER_BUILD_LIMITS_TEAM').default(DEFAULT_PLAN_BUILD.team),
  /**
   * CPUs kept for the control plane (server, databases): sandboxes together get the host's CPUs
   * less this, and no plan more. Default: a quarter of the host's CPUs, at least 0.5.
   */
  CODERUNNER_CPU_RESERVE: z.coerce
    .number({ error: 'CODERUNNER_CPU_RESERVE must be a number of CPUs, e.g. 0.5' })
    .min(0, 'CODERUNNER_CPU_RESERVE must be 0 or more')
    .optional(),
  /** Which Node.js apps run on: `registry` (what they ask for, else the newest LTS, from the npm registry) or `host`. */
  CODERUNNER_NODE_VERSIONS: z
    .enum(['registry', 'host'], { error: 'CODERUNNER_NODE_VERSIONS must be registry or host' })
    .default('registry'),
  /** Where fetched Node.js versions are kept (default `<data dir>/node`). */
  CODERUNNER_NODE_CACHE: z.string().min(1).optional(),
  /** The npm registry Node.js versions come from. */
  CODERUNNER_NPM_REGISTRY: z
    .url('CODERUNNER_NPM_REGISTRY must be a URL')
    .default('https://registry.npmjs.org/'),
  /**
   * Proxies whose X-Forwarded-For is believed (Express "trust proxy": addresses, CIDRs, or
   * loopback/linklocal/uniquelocal), comma-separated. Default none: the client is the TCP peer.
   */
  TRUST_PROXY: commaList,
});

/** Every environment variable the server reads. */
export const CONFIG_VARIABLES = [
  ...Object.keys(schema.shape),
  ...API_CONFIG_VARIABLES,
  'CODERUNNER_ENCRYPTION_KEYS',
  'CODERUNNER_APPS_DATABASE_URL',
  'CODERUNNER_APPS_EMBEDDED_PG_PORT',
  'CODERUNNER_APPS_DB_CONNECTION_LIMIT',
  'CODERUNNER_APPS_DATABASES',
  'CODERUNNER_DB_BACKUPS_KEEP_FREE',
  'CODERUNNER_DB_BACKUPS_KEEP_PERSONAL',
  'CODERUNNER_DB_BACKUPS_KEEP_TEAM',
  'AGENTSPHERE_API_KEY',
  'AGENTSPHERE_DOMAIN',
  'AGENTSPHERE_TEMPLATE',
  'AGENTSPHERE_TEMPLATE_NODEJS',
  'AGENTSPHERE_TEMPLATE_PYTHON',
  'AGENTSPHERE_DB_TEMPLATE',
];

export type Config = z.infer<typeof schema> & {
  dataDir: string;
  api: ApiConfig;
  /** The host's CPUs, the reserve kept for the control plane, and what sandboxes may use together. */
  cpu: { host: number; reserve: number; tenants: number };
  /** Each plan's sandbox limits, CPUs clamped to `cpu.tenants`. */
  planLimits: Record<Plan, ResourceLimits>;
  /** What to say at start-up: each plan configured above what sandboxes may use here. */
  planWarnings: string[];
  /** Installs and builds: their memory and CPUs (clamped), and the builds this machine runs at once. */
  builds: { limits: { memoryMb: number; cpus: number }; slots: number; slotsDir: string };
  /** Each plan's build time limit and build cache cap. */
  planBuild: Record<Plan, { timeLimitMs: number; cacheMb: number }>;
  /** The environment as given (the sandbox and key settings read their own variables from it). */
  env: NodeJS.ProcessEnv;
  /** Backups of a project's database kept for each plan (CODERUNNER_DB_BACKUPS_KEEP_*). */
  backupsKept: Record<Plan, number>;
};

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Each plan's limits with no more CPUs than `cpu.tenants`, and a sentence for each plan clamped. */
export function clampPlanLimits(
  configured: Record<Plan, ResourceLimits>,
  cpu: Config['cpu'],
): { planLimits: Record<Plan, ResourceLimits>; planWarnings: string[] } {
  const planLimits = { ...configured };
  const planWarnings: string[] = [];
  for (const plan of PLANS) {
    const limits = configured[plan];
    if (limits.cpus <= cpu.tenants) continue;
    planLimits[plan] = { ...limits, cpus: cpu.tenants };
    planWarnings.push(
      `${planVariable(plan)} gives a sandbox ${limits.cpus} CPUs, more than sandboxes may use on this machine: ` +
        `${plan} sandboxes get ${cpu.tenants} (its ${cpu.host} CPUs less ${cpu.reserve} kept for the control plane, CODERUNNER_CPU_RESERVE)`,
    );
  }
  return { planLimits, planWarnings };
}

/**
 * Validate the environment; throws ConfigError listing every bad variable. `host.cpus`: the
 * machine's CPUs (default: those this process may run on).
 */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  host: { cpus: number } = { cpus: hostCpus() },
): Config {
  // Empty strings mean "unset", as in most .env tooling.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== ''));
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const dataDir = defaultDataDir(present);
  let api: ApiConfig;
  let backupsKept: Record<Plan, number>;
  try {
    api = apiConfigFromEnv(present);
    backupsKept = backupsKeptFromEnv(present);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const reserve = parsed.data.CODERUNNER_CPU_RESERVE ?? defaultCpuReserve(host.cpus);
  if (host.cpus - reserve < MIN_TENANT_CPUS) {
    throw new ConfigError(
      `invalid configuration:\n  CODERUNNER_CPU_RESERVE: ${reserve} leaves sandboxes less than ${MIN_TENANT_CPUS} of this machine's ${host.cpus} CPUs`,
    );
  }
  const cpu = { host: host.cpus, reserve, tenants: tenantCpuBudget(host.cpus, reserve) };
  const configured = Object.fromEntries(
    PLANS.map((plan) => [plan, parseLimits(parsed.data[planVariable(plan)])]),
  ) as Record<Plan, ResourceLimits>;
  const [buildMemoryMb, buildCpus] = parsed.data.CODERUNNER_BUILD_LIMITS.split('/').map(Number) as [
    number,
    number,
  ];
  const builds = {
    limits: { memoryMb: buildMemoryMb, cpus: Math.min(buildCpus, cpu.tenants) },
    slots: parsed.data.CODERUNNER_BUILD_SLOTS ?? defaultBuildSlots(buildMemoryMb, 0.5, host.cpus),
    slotsDir:
      parsed.data.CODERUNNER_BUILD_SLOTS_DIR ??
      (process.getuid?.() === 0 ? DEFAULT_BUILD_SLOTS_DIR : path.join(dataDir, 'build-slots')),
  };
  const planBuild = Object.fromEntries(
    PLANS.map((plan) => {
      const [minutes, cacheMb] = parsed.data[planBuildVariable(plan)].split('/').map(Number) as [
        number,
        number,
      ];
      return [plan, { timeLimitMs: Math.round(minutes * 60_000), cacheMb }];
    }),
  ) as Record<Plan, { timeLimitMs: number; cacheMb: number }>;
  return {
    ...parsed.data,
    dataDir,
    api,
    env: present,
    backupsKept,
    cpu,
    builds,
    planBuild,
    ...clampPlanLimits(configured, cpu),
  };
}

/** For entry points: the configuration, or the list of bad variables on stderr and exit code 2. */
export function loadConfigOrExit(env: NodeJS.ProcessEnv = process.env): Config {
  try {
    return loadConfig(env);
  } catch (err) {
    console.error(err instanceof ConfigError ? err.message : err);
    process.exit(2);
  }
}

/** The deployment runtime's settings (packages/api/src/deployments/runtime.ts) from the server's. */
export function runtimeConfig(config: Config): RuntimeConfig {
  return {
    dataDir: config.dataDir,
    env: config.env,
    provider: config.SANDBOX_PROVIDER,
    appsBaseUrl: config.CODERUNNER_APPS_BASE_URL,
    port: config.PORT,
    maxUploadMb: config.CODERUNNER_MAX_UPLOAD_MB,
    maxFiles: config.CODERUNNER_MAX_FILES,
    isolation: config.CODERUNNER_ISOLATION,
    sandboxUids: parseUidRange(config.CODERUNNER_SANDBOX_UIDS),
    planLimits: config.planLimits,
    tenantCpus: config.cpu.tenants,
    backupsKept: config.backupsKept,
    builds: config.builds,
    planBuild: config.planBuild,
    nodeVersions: {
      mode: config.CODERUNNER_NODE_VERSIONS,
      cacheDir: config.CODERUNNER_NODE_CACHE,
      registry: config.CODERUNNER_NPM_REGISTRY,
    },
    engine: {
      concurrency: config.WORKER_CONCURRENCY,
      installTimeoutMs: config.CODERUNNER_INSTALL_TIMEOUT_S * 1000,
      buildTimeoutMs: config.CODERUNNER_BUILD_TIMEOUT_S * 1000,
      startTimeoutMs: config.CODERUNNER_START_TIMEOUT_S * 1000,
      stuckAfterMs: config.CODERUNNER_STUCK_AFTER_S * 1000,
      maxRetries: config.CODERUNNER_BUILD_RETRIES,
      reconcileIntervalMs: config.CODERUNNER_RECONCILE_INTERVAL_S * 1000,
      redeployDrainMs: config.CODERUNNER_REDEPLOY_DRAIN_S * 1000,
      restarts: {
        policy: DEFAULT_RESTARTS.policy,
        backoffMs: config.CODERUNNER_RESTART_BACKOFF_MS,
        maxExits: config.CODERUNNER_RESTART_MAX_EXITS,
        windowMs: config.CODERUNNER_RESTART_WINDOW_S * 1000,
      },
    },
  };
}
