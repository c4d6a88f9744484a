export {
  isLocalDatabaseSandboxId,
  LOCAL_DATABASE_SANDBOX_PREFIX,
  localDatabaseName,
  localDatabaseSandboxId,
} from './names';
export {
  APP_CONNECTION_LIMIT,
  createLocalDatabaseProvisioner,
  type DatabaseInfo,
  DEFAULT_APPS_EMBEDDED_PORT,
  type LocalDatabaseConnectionInfo,
  type LocalDatabaseProvisioner,
  type LocalDatabaseProvisionerOptions,
  localDatabaseOptionsFromEnv,
  type ProvisionStep,
  TRUST_WARNING,
} from './provisioner';
