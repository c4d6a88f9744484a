/**
 * One module per table, each the only code that writes SQL for (or calls the model of) its table:
 * call their functions, e.g. `deployments.currentOf(sequelize, projectId)`. Also
 * `@coderunner/api/tables`, for the server's operator commands.
 */
export * as deployments from './deployments';
export * as projects from './projects';
export * as users from './users';
