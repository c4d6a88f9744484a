/**
 * The shape of every error the API answers with, shared by the server's error formatter and the
 * typed client. Types only: importing this file brings no server code.
 */
import type { TRPC_ERROR_CODE_KEY } from '@trpc/server';

/** Every code an error may carry (tRPC's codes; the API uses BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT, PAYLOAD_TOO_LARGE, TOO_MANY_REQUESTS, SERVICE_UNAVAILABLE, INTERNAL_SERVER_ERROR). */
export type CodeRunnerErrorCode = TRPC_ERROR_CODE_KEY;

export interface ValidationIssue {
  /** The field, e.g. ['name']; empty for the input as a whole. */
  path: string[];
  message: string;
}

/** `error.data` of every CodeRunner error: the optional fields are present when they apply. */
export interface CodeRunnerErrorData {
  code: CodeRunnerErrorCode;
  httpStatus: number;
  /** The procedure, e.g. 'projects.create'. */
  path?: string;
  /** BAD_REQUEST from input validation: one entry per field. */
  issues?: ValidationIssue[];
  /** INTERNAL_SERVER_ERROR: the id under which the server logged the details. */
  requestId?: string;
  /** TOO_MANY_REQUESTS and SERVICE_UNAVAILABLE: when to try again (also the Retry-After header). */
  retryAfterSeconds?: number;
}

/** Seconds a client is told to wait when the service is unavailable (database down, hashing busy). */
export const UNAVAILABLE_RETRY_SECONDS = 5;
