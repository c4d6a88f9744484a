import {
  type CreationOptional,
  DataTypes,
  type ForeignKey,
  type InferAttributes,
  type InferCreationAttributes,
  literal,
  Model,
  type NonAttribute,
  type Sequelize,
} from 'sequelize';

import { DEPLOYMENT_STATUSES, type DeployedRuntimeType, type DeploymentStatus, type PlanType } from './enums';

export {
  DEPLOYMENT_STATUSES,
  type DeployedRuntimeType,
  type DeploymentStatus,
  PLAN_TYPES,
  type PlanType,
  RUNTIME_TYPES,
  type RuntimeType,
} from './enums';

/*
 * The database owns `id` (gen_random_uuid()), `created_at`/`updated_at` (NOW()) and the trigger owns
 * `updated_at`: the models declare these columns without client-side defaults, Sequelize's own
 * timestamp handling is off, and INSERT/UPDATE ... RETURNING reads the database's values back.
 */

export class User extends Model<InferAttributes<User>, InferCreationAttributes<User>> {
  declare id: CreationOptional<string>;
  declare email: string;
  declare passwordHash: string;
  declare planType: CreationOptional<PlanType>;
  declare createdAt: CreationOptional<Date>;
  declare updatedAt: CreationOptional<Date>;
  declare projects?: NonAttribute<Project[]>;
}

export class Project extends Model<InferAttributes<Project>, InferCreationAttributes<Project>> {
  declare id: CreationOptional<string>;
  declare userId: ForeignKey<User['id']>;
  declare name: string;
  declare description: CreationOptional<string | null>;
  declare createdAt: CreationOptional<Date>;
  declare updatedAt: CreationOptional<Date>;
  declare user?: NonAttribute<User>;
  declare deployments?: NonAttribute<Deployment[]>;
}

export class Deployment extends Model<InferAttributes<Deployment>, InferCreationAttributes<Deployment>> {
  declare id: CreationOptional<string>;
  declare projectId: ForeignKey<Project['id']>;
  declare appSandboxId: CreationOptional<string | null>;
  declare publicUrl: CreationOptional<string | null>;
  declare dbSandboxId: CreationOptional<string | null>;
  /** Encrypted connection info (a sealed box), never plaintext. */
  declare dbConnectionInfo: CreationOptional<Record<string, unknown> | null>;
  declare status: CreationOptional<DeploymentStatus>;
  declare runtimeType: CreationOptional<DeployedRuntimeType | null>;
  declare createdAt: CreationOptional<Date>;
  declare updatedAt: CreationOptional<Date>;
  declare project?: NonAttribute<Project>;
}

const dbOwnedColumns = {
  // Sequelize would send NULL for an unset primary key; DEFAULT lets gen_random_uuid() choose it.
  id: { type: DataTypes.UUID, primaryKey: true, defaultValue: literal('DEFAULT') },
  createdAt: { type: DataTypes.DATE, field: 'created_at' },
  updatedAt: { type: DataTypes.DATE, field: 'updated_at' },
} as const;

const common = { underscored: true, timestamps: false } as const;

export function initModels(sequelize: Sequelize): void {
  User.init(
    {
      ...dbOwnedColumns,
      email: { type: DataTypes.STRING(255), allowNull: false },
      passwordHash: { type: DataTypes.STRING(255), allowNull: false },
      // NOT NULL with a database default: enforced by PostgreSQL, omitted from INSERTs when unset.
      planType: { type: DataTypes.STRING(50) },
    },
    { ...common, sequelize, tableName: 'users', modelName: 'User' },
  );
  Project.init(
    {
      ...dbOwnedColumns,
      name: { type: DataTypes.STRING(255), allowNull: false },
      description: { type: DataTypes.TEXT, allowNull: true },
    },
    { ...common, sequelize, tableName: 'projects', modelName: 'Project' },
  );
  Deployment.init(
    {
      ...dbOwnedColumns,
      appSandboxId: { type: DataTypes.STRING(255) },
      publicUrl: { type: DataTypes.STRING(255) },
      dbSandboxId: { type: DataTypes.STRING(255) },
      dbConnectionInfo: { type: DataTypes.JSONB },
      status: { type: DataTypes.ENUM(...DEPLOYMENT_STATUSES) },
      runtimeType: { type: DataTypes.STRING(50) },
    },
    { ...common, sequelize, tableName: 'deployments', modelName: 'Deployment' },
  );

  User.hasMany(Project, {
    foreignKey: { name: 'userId', allowNull: false },
    onDelete: 'CASCADE',
    as: 'projects',
  });
  Project.belongsTo(User, {
    foreignKey: { name: 'userId', allowNull: false },
    onDelete: 'CASCADE',
    as: 'user',
  });
  Project.hasMany(Deployment, {
    foreignKey: { name: 'projectId', allowNull: false },
    onDelete: 'CASCADE',
    as: 'deployments',
  });
  Deployment.belongsTo(Project, {
    foreignKey: { name: 'projectId', allowNull: false },
    onDelete: 'CASCADE',
    as: 'project',
  });
}
