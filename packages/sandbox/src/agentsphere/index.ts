export type {
  RetryPolicy as AgentSphereRetryPolicy,
  SandboxClass as AgentSphereSandboxClass,
} from './client';
export { type AgentSphereEnvConfig, type AgentSphereTemplates, agentSphereConfigFromEnv } from './config';
export {
  type AgentSphereDatabase,
  type AgentSphereDatabaseConnectionInfo,
  type AgentSphereDatabaseOptions,
  provisionAgentSphereDatabase,
  resetAgentSphereDatabase,
} from './database';
export { ProviderAuthError } from './errors';
export { sweepOrphans } from './orphans';
export {
  type AgentSphereProviderOptions,
  createAgentSphereProvider,
  resolveAgentSphereTemplate,
} from './provider';
