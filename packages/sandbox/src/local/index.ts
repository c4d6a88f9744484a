export { BuildSlots, DEFAULT_BUILD_SLOTS_DIR, defaultBuildSlots, type SlotWait } from './build-slots';
export {
  DEFAULT_LIMITS,
  defaultCpuReserve,
  hostCpus,
  MIN_TENANT_CPUS,
  type ResourceLimits,
  tenantCpuBudget,
} from './cgroups';
export {
  detectIsolation,
  INSTALL_HINT,
  ISOLATION_MODES,
  type IsolationMode,
  type IsolationStatus,
  isolationWarning,
} from './isolation';
export { APPS_ADDRESS, isAppsAddress } from './network';
export { findFreePort } from './ports';
export { createLocalProvider, type LocalProvider, type LocalProviderOptions } from './provider';
export { DEFAULT_UID_RANGE, parseUidRange, type UidRange } from './uids';
export { DEFAULT_SANDBOX_USER } from './user';
