export {
  type EmbeddedPostgres,
  EmbeddedPostgresError,
  type EmbeddedPostgresMode,
  type EmbeddedPostgresOptions,
  type EmbeddedPostgresSettingNames,
  initEmbeddedPostgres,
  type SuperviseEvent,
  startEmbeddedPostgres,
} from './cluster';
export { DEFAULT_OS_USER } from './os-user';
export { findFreePort } from './ports';
