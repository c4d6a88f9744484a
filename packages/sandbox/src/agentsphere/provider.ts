/**
 * `SandboxProvider` over AgentSphere (an E2B-compatible cloud, see docs/agentsphere-protocol.md).
 * Only the SDK talks to AgentSphere; this file maps the interface onto it call for call.
 */
import { randomUUID } from 'node:crypto';
import { Sandbox as DefaultSandboxClass, type Sandbox as SdkSandbox } from 'agentsphere-sandbox-base';
import type { CreateSandboxOptions, SandboxInfo, SandboxMetadata, SandboxProvider } from '../types';
import { SandboxError, SandboxNotFoundError } from '../types';
import { AgentSphereClient, type RetryPolicy, type SandboxClass } from './client';
import type { AgentSphereTemplates } from './config';
import { AgentSphereSandbox, type Lease } from './sandbox';

export interface AgentSphereProviderOptions {
  apiKey: string;
  /** e.g. `agentsphere.run`; the API is `https://api.<domain>`. */
  domain: string;
  templates: AgentSphereTemplates;
  /** The SDK's `Sandbox` class (injected by tests or for an E2B-compatible vendor). */
  SandboxClass?: SandboxClass;
  /** Deadline of each API call (default 30 s). */
  requestTimeoutMs?: number;
  /** How long a sandbox lives without keep-alive (default 5 minutes). */
  sandboxTimeoutMs?: number;
  /** For calls safe to repeat (default 3 attempts, 500 ms doubling). */
  retry?: RetryPolicy;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
export const DEFAULT_SANDBOX_TIMEOUT_MS = 5 * 60_000;
export const DEFAULT_RETRY: RetryPolicy = { attempts: 3, baseDelayMs: 500 };

/** The metadata keys every CodeRunner sandbox carries; others under the same key are not ours. */
const OWN_METADATA_KEYS = ['deploymentId', 'projectId', 'role'] as const;
/** Metadata naming the create call that made a sandbox: a create that failed is looked up by it. */
export const CREATE_REQUEST_KEY = 'createRequest';
/**
 * How long a connect result is reused (the reconciler connects to every RUNNING sandbox each pass), and
 * only while the sandbox's known end time is ahead. The SDK object holds no state beyond the sandbox id
 * and envd's access token; a sandbox killed by someone else meanwhile fails its next call instead.
 */
const CONNECT_CACHE_MS = 60_000;

export function createAgentSphereProvider(options: AgentSphereProviderOptions): SandboxProvider {
  return new AgentSphereProvider(options);
}

class AgentSphereProvider implements SandboxProvider {
  readonly name = 'agentsphere';
  readonly sandboxesOnThisHost = false;
  private readonly client: AgentSphereClient;
  private readonly templates: AgentSphereTemplates;
  readonly sandboxTimeoutMs: number;
  private readonly connected = new Map<
    string,
    { sdk: SdkSandbox; metadata: SandboxMetadata; until: number; lease: Lease }
  >();

  constructor(options: AgentSphereProviderOptions) {
    this.client = new AgentSphereClient({
      SandboxClass: options.SandboxClass ?? DefaultSandboxClass,
      apiKey: options.apiKey,
      domain: options.domain,
      requestTimeoutMs: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      retry: options.retry ?? DEFAULT_RETRY,
    });
    this.templates = options.templates;
    this.sandboxTimeoutMs = options.sandboxTimeoutMs ?? DEFAULT_SANDBOX_TIMEOUT_MS;
  }

  /**
   * A failed create is retried like any transient failure, but first looked up by the metadata naming
   * this call: a create that timed out may have made the sandbox, and a second one would be a duplicate.
   * envd is secured (`secure: true`): without the access token the API hands back, nobody who merely
   * knows the sandbox id (it is in every public URL) can list processes (and their environment) or run
   * commands. The token is never stored: connect reads it again from the API.
   */
  async create(opts: CreateSandboxOptions): Promise<AgentSphereSandbox> {
    const template = resolveAgentSphereTemplate(this.templates, opts.template);
    const createRequest = randomUUID();
    const metadata = { ...opts.metadata, [CREATE_REQUEST_KEY]: createRequest };
    const sdk = await this.client.call(
      `create a sandbox from template "${template}"`,
      () =>
        this.client.SandboxClass.create(template, {
          ...this.client.connection,
          metadata,
          envs: opts.envs,
          timeoutMs: opts.timeoutMs ?? this.sandboxTimeoutMs,
          secure: true,
        }),
      {
        retry: true,
        recover: async () => {
          const [made] = await this.list({ metadata: { [CREATE_REQUEST_KEY]: createRequest } });
          return made ? (await this.connectSdk(made.id)).sdk : undefined;
        },
      },
    );
    const lease = { endsAt: Date.now() + (opts.timeoutMs ?? this.sandboxTimeoutMs) };
    this.remember(sdk, opts.metadata, lease);
    const sandbox = new AgentSphereSandbox(sdk, opts.metadata, this.client, lease);
    try {
      await sandbox.prepareAppFolder();
    } catch (err) {
      await this.kill(sandbox.id).catch(() => undefined);
      throw err;
    }
    return sandbox;
  }

  /** Reuses a recent connect (see CONNECT_CACHE_MS): one REST call per sandbox per period, not two per call. */
  async connect(id: string): Promise<AgentSphereSandbox> {
    const cached = this.connected.get(id);
    const now = Date.now();
    const { sdk, metadata, lease } =
      cached && cached.until > now && cached.lease.endsAt > now ? cached : await this.connectSdk(id);
    return new AgentSphereSandbox(sdk, metadata, this.client, lease);
  }

  private remember(sdk: SdkSandbox, metadata: SandboxMetadata, lease: Lease): void {
    const now = Date.now();
    for (const [id, entry] of this.connected) if (entry.until <= now) this.connected.delete(id);
    this.connected.set(sdk.sandboxId, { sdk, metadata, until: now + CONNECT_CACHE_MS, lease });
  }

  /**
   * One API call (the sandbox's info: metadata and envd's access token), where the SDK's own
   * `Sandbox.connect` would read the same info a second time.
   */
  private async connectSdk(
    id: string,
  ): Promise<{ sdk: SdkSandbox; metadata: SandboxMetadata; lease: Lease }> {
    const info = await this.client.call(
      `look up sandbox ${id}`,
      () => this.client.SandboxClass.getInfo(id, this.client.connection),
      { retry: true, sandboxId: id },
    );
    const sdk = new this.client.SandboxClass({
      ...this.client.connection,
      sandboxId: id,
      envdVersion: info.envdVersion,
      envdAccessToken: info.envdAccessToken,
    });
    // Sandboxes made by this provider always carry the CodeRunner keys.
    const metadata = ownMetadata(info.metadata as SandboxMetadata);
    const lease = { endsAt: info.endAt.getTime() };
    this.remember(sdk, metadata, lease);
    return { sdk, metadata, lease };
  }

  async kill(id: string): Promise<boolean> {
    const cached = this.connected.get(id);
    if (cached) cached.lease.endsAt = 0;
    this.connected.delete(id);
    try {
      return await this.client.call(
        `kill sandbox ${id}`,
        () => this.client.SandboxClass.kill(id, this.client.connection),
        { retry: true, sandboxId: id },
      );
    } catch (err) {
      if (err instanceof SandboxNotFoundError) return false;
      throw err;
    }
  }

  /** Only CodeRunner's sandboxes: others sharing the API key (no deploymentId/projectId/role) are left out. */
  async list(filter: { metadata?: Partial<SandboxMetadata> } = {}): Promise<SandboxInfo[]> {
    const wanted = Object.fromEntries(
      Object.entries(filter.metadata ?? {}).filter(
        (entry): entry is [string, string] => entry[1] !== undefined,
      ),
    );
    const listed = await this.client.call(
      'list sandboxes',
      () =>
        this.client.SandboxClass.list({
          ...this.client.connection,
          query: Object.keys(wanted).length > 0 ? { metadata: wanted } : undefined,
        }),
      { retry: true },
    );
    return listed.flatMap((sandbox) => {
      const metadata = sandbox.metadata ?? {};
      if (!isOwnMetadata(metadata)) return [];
      // The API filters already; checking again costs nothing and keeps the contract if it did not.
      if (!Object.entries(wanted).every(([key, value]) => metadata[key] === value)) return [];
      return [{ id: sandbox.sandboxId, metadata: ownMetadata(metadata), startedAt: sandbox.startedAt }];
    });
  }
}

/**
 * `template` in CreateSandboxOptions is either a runtime name (`nodejs`, `python`, `db`, `default`),
 * mapped through the configured templates, or a literal AgentSphere template id.
 */
export function resolveAgentSphereTemplate(
  templates: AgentSphereTemplates,
  requested: string | undefined,
): string {
  switch (requested) {
    case undefined:
    case 'default':
      return templates.default;
    case 'nodejs':
    case 'python':
      return templates[requested] ?? templates.default;
    case 'db':
      if (!templates.db) {
        throw new SandboxError('a database needs a PostgreSQL template: set AGENTSPHERE_DB_TEMPLATE');
      }
      return templates.db;
    default:
      return requested;
  }
}

/** Without the bookkeeping of create (CREATE_REQUEST_KEY): what the sandbox was created with. */
function ownMetadata(metadata: SandboxMetadata): SandboxMetadata {
  const { [CREATE_REQUEST_KEY]: _request, ...rest } = metadata;
  return rest as SandboxMetadata;
}

function isOwnMetadata(metadata: Record<string, string>): metadata is SandboxMetadata {
  return OWN_METADATA_KEYS.every((key) => typeof metadata[key] === 'string');
}
