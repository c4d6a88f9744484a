import { BaseError, DatabaseError, ForeignKeyConstraintError, UniqueConstraintError } from 'sequelize';

/** A database refusal that means something to the domain; raw driver errors never leave this package. */
export class DomainError extends Error {
  override name = 'DomainError';
}

/** A UNIQUE constraint refused the write; `field` names the column (e.g. `email`). */
export class UniqueViolationError extends DomainError {
  override name = 'UniqueViolationError';
  constructor(
    readonly table: string,
    readonly field: string,
    readonly constraint: string,
  ) {
    super(`${table}.${field} already exists`);
  }
}

export class EmailTakenError extends UniqueViolationError {
  override name = 'EmailTakenError';
  constructor(constraint: string) {
    super('users', 'email', constraint);
    this.message = 'email is already registered';
  }
}

/** A foreign key refused the write: the referenced row does not exist (any more). */
export class ReferenceMissingError extends DomainError {
  override name = 'ReferenceMissingError';
  constructor(
    readonly table: string,
    readonly constraint: string,
  ) {
    super(`the row referenced from ${table} does not exist`);
  }
}

/** A value the column's type refuses (an unknown enum label, a malformed uuid, an over-long string). */
export class InvalidValueError extends DomainError {
  override name = 'InvalidValueError';
}

interface PgError {
  code?: string;
  table?: string;
  constraint?: string;
  detail?: string;
}

const INVALID_VALUE_CODES = new Set(['22P02', '22001', '23502', '23514']);

/** Translate a Sequelize/pg error into a domain error; other errors are returned unchanged. */
export function toDomainError(err: unknown): unknown {
  if (!(err instanceof BaseError)) return err;
  const pgErr = ((err as { parent?: PgError }).parent ?? {}) as PgError;
  if (err instanceof UniqueConstraintError) {
    const constraint = pgErr.constraint ?? '';
    const table = pgErr.table ?? '';
    const field = /\(([^)]+)\)=/.exec(pgErr.detail ?? '')?.[1] ?? constraint;
    if (table === 'users' && field === 'email') return new EmailTakenError(constraint);
    return new UniqueViolationError(table, field, constraint);
  }
  if (err instanceof ForeignKeyConstraintError) {
    return new ReferenceMissingError(pgErr.table ?? '', pgErr.constraint ?? '');
  }
  if (err instanceof DatabaseError && pgErr.code && INVALID_VALUE_CODES.has(pgErr.code)) {
    return new InvalidValueError((err as Error).message);
  }
  return err;
}

/** Await `work`, rethrowing database refusals as domain errors. */
export async function withDomainErrors<T>(work: Promise<T> | (() => Promise<T>)): Promise<T> {
  try {
    return await (typeof work === 'function' ? work() : work);
  } catch (err) {
    throw toDomainError(err);
  }
}
