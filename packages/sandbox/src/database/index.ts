export {
  isLocalDatabaseSandboxId,
  LOCAL_DATABASE_SANDBOX_PREFIX,
  localDatabaseName,
  localDatabaseSandboxId,
} from './names';
export {
  APPS_CLUSTER_SETTINGS,
  type AppsClusterState,
  createLocalDatabaseProvisioner,
  type DatabaseInfo,
  DEFAULT_APP_CONNECTION_LIMIT,
  DEFAULT_APPS_EMBEDDED_PORT,
  type LocalDatabaseConnectionInfo,
  type LocalDatabaseProvisioner,
  type LocalDatabaseProvisionerOptions,
  localDatabaseOptionsFromEnv,
  type ProvisionStep,
  TRUST_WARNING,
} from './provisioner';
