export { findFreePort } from './ports';
export { createLocalProvider, type LocalProviderOptions } from './provider';
export { DEFAULT_SANDBOX_USER } from './user';
