/** AgentSphere settings, read from the project's own environment variables. */

/** Template ids per runtime. `default` serves every runtime without its own template. */
export interface AgentSphereTemplates {
  default: string;
  nodejs?: string;
  python?: string;
  /** Template with PostgreSQL (see database.ts); no fallback: the default template has no database. */
  db?: string;
}

export interface AgentSphereEnvConfig {
  apiKey: string;
  domain: string;
  templates: AgentSphereTemplates;
}

export const DEFAULT_AGENTSPHERE_DOMAIN = 'agentsphere.run';

/**
 * Reads AGENTSPHERE_API_KEY, AGENTSPHERE_DOMAIN, AGENTSPHERE_TEMPLATE, AGENTSPHERE_TEMPLATE_NODEJS,
 * AGENTSPHERE_TEMPLATE_PYTHON and AGENTSPHERE_DB_TEMPLATE. The SDK never reports a missing key itself
 * (the first sign would be a 401 deep inside a deployment), so this fails at start-up instead.
 */
export function agentSphereConfigFromEnv(
  env: Record<string, string | undefined> = process.env,
): AgentSphereEnvConfig {
  const read = (name: string) => env[name]?.trim() || undefined;
  const apiKey = read('AGENTSPHERE_API_KEY');
  if (!apiKey) {
    throw new Error(
      'SANDBOX_PROVIDER=agentsphere needs AGENTSPHERE_API_KEY: create an API key in the AgentSphere ' +
        'dashboard (Team tab) and set it in the environment, or use SANDBOX_PROVIDER=local',
    );
  }
  return {
    apiKey,
    domain: read('AGENTSPHERE_DOMAIN') ?? DEFAULT_AGENTSPHERE_DOMAIN,
    templates: {
      default: read('AGENTSPHERE_TEMPLATE') ?? 'base',
      nodejs: read('AGENTSPHERE_TEMPLATE_NODEJS'),
      python: read('AGENTSPHERE_TEMPLATE_PYTHON'),
      db: read('AGENTSPHERE_DB_TEMPLATE'),
    },
  };
}
