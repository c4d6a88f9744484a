import {
  API_CONFIG_VARIABLES,
  type ApiConfig,
  apiConfigFromEnv,
  DEFAULT_MAX_FILES,
  DEFAULT_MAX_UPLOAD_MB,
  type RuntimeConfig,
} from '@coderunner/api';
import { defaultDataDir } from '@coderunner/db';
import { APPS_ADDRESS, isAppsAddress, parseUidRange } from '@coderunner/sandbox';
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
  /** How long a deployment replaced by a redeploy keeps serving requests in flight before it is stopped. */
  CODERUNNER_REDEPLOY_DRAIN_S: z.coerce.number().min(0).max(3600).default(30),
  /** Tenant isolation of the local provider: auto (when this machine can), sandbox (required), none. */
  CODERUNNER_ISOLATION: z
    .enum(['auto', 'sandbox', 'none'], { error: 'CODERUNNER_ISOLATION must be auto, sandbox or none' })
    .default('auto'),
  /** Uids (and gids) handed to isolated sandboxes, one each: FIRST-LAST. */
  CODERUNNER_SANDBOX_UIDS: z
    .string()
    .regex(/^\d+-\d+$/, 'CODERUNNER_SANDBOX_UIDS must be FIRST-LAST, e.g. 3000000-3099999')
    .default('3000000-3099999'),
  /** Limits of a sandbox by its owner's plan: MEMORY_MB/PROCESSES/CPUS[/DISK_MB]. */
  CODERUNNER_LIMITS_FREE: limits('CODERUNNER_LIMITS_FREE').default('256/128/0.5/1024'),
  CODERUNNER_LIMITS_PERSONAL: limits('CODERUNNER_LIMITS_PERSONAL').default('512/256/1/2048'),
  CODERUNNER_LIMITS_TEAM: limits('CODERUNNER_LIMITS_TEAM').default('1024/512/2/4096'),
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
  /** The environment as given (the sandbox and key settings read their own variables from it). */
  env: NodeJS.ProcessEnv;
};

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Validate the environment; throws ConfigError listing every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings mean "unset", as in most .env tooling.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== ''));
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  const dataDir = defaultDataDir(present);
  let api: ApiConfig;
  try {
    api = apiConfigFromEnv(present);
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  return { ...parsed.data, dataDir, api, env: present };
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
    planLimits: {
      free: parseLimits(config.CODERUNNER_LIMITS_FREE),
      personal: parseLimits(config.CODERUNNER_LIMITS_PERSONAL),
      team: parseLimits(config.CODERUNNER_LIMITS_TEAM),
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
    },
  };
}
