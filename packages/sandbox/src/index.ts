export * from './agentsphere';
export {
  ArchiveError,
  type ArchiveInput,
  type ExtractOptions,
  extractTarGz,
} from './archive';
export * from './database';
export { createLocalProvider, DEFAULT_SANDBOX_USER, findFreePort, type LocalProviderOptions } from './local';
export { AppNotReadyError, type WaitForAppOptions, waitForApp } from './readiness';
export {
  type BuildPlan,
  detectRuntime,
  MANIFEST_FILE,
  type Manifest,
  parseManifest,
  RuntimeDetectionError,
  type RuntimeType,
} from './runtime';
export * from './types';
