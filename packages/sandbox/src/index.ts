export * from './agentsphere';
export {
  ArchiveError,
  type ArchiveInput,
  type ExtractOptions,
  extractTarGz,
} from './archive';
export * from './database';
export {
  APPS_ADDRESS,
  BuildSlots,
  createLocalProvider,
  DEFAULT_BUILD_SLOTS_DIR,
  DEFAULT_LIMITS,
  DEFAULT_SANDBOX_USER,
  DEFAULT_UID_RANGE,
  defaultBuildSlots,
  defaultCpuReserve,
  detectIsolation,
  findFreePort,
  hostCpus,
  INSTALL_HINT,
  ISOLATION_MODES,
  type IsolationMode,
  type IsolationStatus,
  isAppsAddress,
  isolationWarning,
  type LocalProvider,
  type LocalProviderOptions,
  MIN_TENANT_CPUS,
  parseUidRange,
  type ResourceLimits,
  type SlotWait,
  tenantCpuBudget,
  type UidRange,
} from './local';
export { devServerOf } from './node-frameworks';
export {
  type NodeChoice,
  NodeVersionError,
  NodeVersions,
  type NodeVersionsOptions,
  newestLts,
  nodePackageName,
  pick as pickNodeVersion,
} from './node-versions';
export { AppNotReadyError, type WaitForAppOptions, waitForApp } from './readiness';
export {
  type BuildPlan,
  detectRuntime,
  MANIFEST_FILE,
  type Manifest,
  type NodeRequest,
  parseManifest,
  RESTART_POLICIES,
  type RequestedRuntime,
  type RestartLimit,
  type RestartPolicy,
  RuntimeDetectionError,
  type RuntimeType,
} from './runtime';
export * from './types';
