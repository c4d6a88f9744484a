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
export { AppNotReadyError, type WaitForAppOptions, waitForApp } from './readiness';
export {
  type BuildPlan,
  detectRuntime,
  MANIFEST_FILE,
  type Manifest,
  parseManifest,
  RESTART_POLICIES,
  type RestartLimit,
  type RestartPolicy,
  RuntimeDetectionError,
  type RuntimeType,
} from './runtime';
export * from './types';
