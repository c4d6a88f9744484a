export { ConnectionError, Op, QueryTypes, type Sequelize, TimeoutError, type Transaction } from 'sequelize';
export {
  type ConnectOptions,
  connect,
  type DatabaseTarget,
  DEFAULT_EMBEDDED_PORT,
  ensureDatabaseExists,
  resolveDatabase,
  resolveDatabaseFromEnv,
} from './connection';
export { type EmbeddedPostgres, EmbeddedPostgresError, startEmbeddedPostgres } from './embedded';
export {
  DomainError,
  EmailTakenError,
  InvalidValueError,
  ReferenceMissingError,
  toDomainError,
  UniqueViolationError,
  withDomainErrors,
} from './errors';
export { createListener, type Listener, type ListenerOptions } from './listen';
export { LEDGER_TABLE, migrateDown, migrateUp, migrationStatus } from './migrator';
export {
  DEPLOYMENT_STATUSES,
  type DeployedRuntimeType,
  Deployment,
  type DeploymentStatus,
  initModels,
  PLAN_TYPES,
  type PlanType,
  Project,
  RUNTIME_TYPES,
  type RuntimeType,
  User,
} from './models';
export { defaultDataDir, projectRoot } from './paths';
export { GuardedClient, guardedPg, guardedPool } from './pg';
