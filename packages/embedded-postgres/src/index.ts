export {
  ARCHIVE_ROOT,
  archivePath,
  BackupError,
  type BackupInfo,
  type BackupOptions,
  backupCluster,
  listBackups,
  pruneBackups,
  type RestoredCluster,
  type RestoreOptions,
  readBackupInfo,
  restoreCluster,
  type StoredBackup,
  sha256File,
} from './backup';
export {
  type Binaries,
  type EmbeddedPostgres,
  EmbeddedPostgresError,
  type EmbeddedPostgresMode,
  type EmbeddedPostgresOptions,
  type EmbeddedPostgresSettingNames,
  embeddedBinaries,
  initEmbeddedPostgres,
  type SuperviseEvent,
  startEmbeddedPostgres,
} from './cluster';
export { DEFAULT_OS_USER } from './os-user';
export { findFreePort } from './ports';
