/**
 * `SandboxProvider` over AgentSphere (an E2B-compatible cloud, see docs/agentsphere-protocol.md).
 * Only the SDK talks to AgentSphere; this file maps the interface onto it call for call.
 */
import { Sandbox as DefaultSandboxClass } from 'agentsphere-sandbox-base';
import type { CreateSandboxOptions, SandboxInfo, SandboxMetadata, SandboxProvider } from '../types';
import { SandboxError, SandboxNotFoundError } from '../types';
import { AgentSphereClient, type RetryPolicy, type SandboxClass } from './client';
import type { AgentSphereTemplates } from './config';
import { AgentSphereSandbox } from './sandbox';

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

export function createAgentSphereProvider(options: AgentSphereProviderOptions): SandboxProvider {
  return new AgentSphereProvider(options);
}

class AgentSphereProvider implements SandboxProvider {
  readonly name = 'agentsphere';
  readonly sandboxesOnThisHost = false;
  private readonly client: AgentSphereClient;
  private readonly templates: AgentSphereTemplates;
  private readonly sandboxTimeoutMs: number;

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
   * A failed create is retried like any transient failure. If AgentSphere did create the sandbox before
   * failing, that copy is never kept alive and ends after `timeoutMs`.
   */
  async create(opts: CreateSandboxOptions): Promise<AgentSphereSandbox> {
    const template = resolveAgentSphereTemplate(this.templates, opts.template);
    const sdk = await this.client.call(
      `create a sandbox from template "${template}"`,
      () =>
        this.client.SandboxClass.create(template, {
          ...this.client.connection,
          metadata: { ...opts.metadata },
          envs: opts.envs,
          timeoutMs: opts.timeoutMs ?? this.sandboxTimeoutMs,
        }),
      { retry: true },
    );
    const sandbox = new AgentSphereSandbox(sdk, opts.metadata, this.client);
    try {
      await sandbox.prepareAppFolder();
    } catch (err) {
      await this.kill(sandbox.id).catch(() => undefined);
      throw err;
    }
    return sandbox;
  }

  async connect(id: string): Promise<AgentSphereSandbox> {
    const options = { retry: true, sandboxId: id };
    const info = await this.client.call(
      `look up sandbox ${id}`,
      () => this.client.SandboxClass.getInfo(id, this.client.connection),
      options,
    );
    const sdk = await this.client.call(
      `connect to sandbox ${id}`,
      () => this.client.SandboxClass.connect(id, this.client.connection),
      options,
    );
    // Sandboxes made by this provider always carry the CodeRunner keys.
    return new AgentSphereSandbox(sdk, info.metadata as SandboxMetadata, this.client);
  }

  async kill(id: string): Promise<boolean> {
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
      return [{ id: sandbox.sandboxId, metadata, startedAt: sandbox.startedAt }];
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

function isOwnMetadata(metadata: Record<string, string>): metadata is SandboxMetadata {
  return OWN_METADATA_KEYS.every((key) => typeof metadata[key] === 'string');
}
