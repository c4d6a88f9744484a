/**
 * Where an upload is checked and parsed: its size (declared, then real), its form fields, and its
 * archive (unpacked into a scratch folder to refuse unsafe or undeployable sources before anything
 * is stored).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RUNTIME_TYPES, type RuntimeType } from '@coderunner/db';
import { type BuildPlan, detectRuntime, extractTarGz } from '@coderunner/sandbox';
import { TRPCError } from '@trpc/server';
import { z } from 'zod';
import { envSetProblem } from '../env-vars';

/** Largest deployment upload by default (CODERUNNER_MAX_UPLOAD_MB). */
export const DEFAULT_MAX_UPLOAD_MB = 50;
/** Most files an uploaded archive may hold by default (CODERUNNER_MAX_FILES). */
export const DEFAULT_MAX_FILES = 10_000;

export interface UploadLimits {
  maxUploadBytes: number;
  maxFiles: number;
}

/** The message for an upload over the limit (the HTTP layer says it from Content-Length, the API from the file). */
export function uploadTooLargeMessage(bytes: number, limitBytes: number): string {
  return `the upload is ${(bytes / 1024 / 1024).toFixed(1)} MB; the limit is ${limitBytes / 1024 / 1024} MB (CODERUNNER_MAX_UPLOAD_MB)`;
}

const fields = z.strictObject({
  projectId: z.uuid('must be a project id (UUID)'),
  runtime: z.enum(RUNTIME_TYPES).optional(),
  database: z.enum(['postgres']).optional(),
  env: z.string().optional(),
  noCache: z.enum(['true', 'false'], { error: 'must be "true" or "false"' }).optional(),
});

/**
 * What the upload procedure reads of its FormData, written out structurally: the input type then
 * names neither Node's nor the DOM's FormData, so browser and Node clients both pass their own, and
 * the router's declarations stay free of Node-only types.
 */
export interface UploadForm {
  entries(): Iterable<[string, string | UploadFile]>;
}
interface UploadFile {
  readonly size: number;
  arrayBuffer(): Promise<ArrayBuffer>;
}

export interface Upload {
  projectId: string;
  runtime?: RuntimeType;
  database?: 'postgres';
  /** Variables for this deployment only, over the project's (`deploy --env`). */
  env?: Record<string, string>;
  /** Build without the project's build cache (`deploy --no-cache`). */
  noCache?: boolean;
  archive: Buffer;
}

/** The `env` field: a JSON object of string values whose names and values pass the rules of env-vars.ts. */
function parseEnvField(text: string): Record<string, string> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TRPCError({
      code: 'BAD_REQUEST',
      message: 'env: must be a JSON object of variables, e.g. {"NAME":"value"}',
    });
  }
  const problem = envSetProblem(value as Record<string, unknown>);
  if (problem) throw new TRPCError({ code: 'BAD_REQUEST', message: problem });
  return value as Record<string, string>;
}

/**
 * `deployments.create`'s FormData: `projectId`, optional `runtime`/`database`, optional `env` (a JSON
 * object of variables for this deployment only), optional `noCache` (`true`: build without the
 * project's build cache), and `source` (a .tar.gz).
 */
export async function readUpload(form: UploadForm, limits: UploadLimits): Promise<Upload> {
  const values: Record<string, string> = {};
  let source: UploadFile | null = null;
  for (const [key, value] of form.entries()) {
    if (key === 'source') {
      if (typeof value === 'string')
        throw new TRPCError({ code: 'BAD_REQUEST', message: 'source: must be a file' });
      source = value;
    } else if (typeof value === 'string') {
      values[key] = value;
    }
  }
  const parsed = fields.safeParse(values);
  if (!parsed.success) {
    const msg = parsed.error.issues.map((i) => `${i.path.join('.') || 'input'}: ${i.message}`).join('; ');
    throw new TRPCError({ code: 'BAD_REQUEST', message: msg });
  }
  if (!source)
    throw new TRPCError({ code: 'BAD_REQUEST', message: 'source: a .tar.gz of the app folder is required' });
  if (source.size > limits.maxUploadBytes) {
    throw new TRPCError({
      code: 'PAYLOAD_TOO_LARGE',
      message: uploadTooLargeMessage(source.size, limits.maxUploadBytes),
    });
  }
  const { env, noCache, ...rest } = parsed.data;
  return {
    ...rest,
    ...(noCache === 'true' ? { noCache: true } : {}),
    ...(env === undefined ? {} : { env: parseEnvField(env) }),
    archive: Buffer.from(await source.arrayBuffer()),
  };
}

/** Unpack into a scratch folder: an unsafe, malformed or undeployable archive is the user's to fix (BAD_REQUEST). */
export async function inspectArchive(
  archive: Buffer,
  limits: UploadLimits,
  runtime?: RuntimeType,
): Promise<BuildPlan> {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'coderunner-upload-'));
  try {
    await extractTarGz(archive, scratch, { maxFiles: limits.maxFiles });
    return await detectRuntime(scratch, runtime);
  } catch (err) {
    if (err instanceof Error && !(err instanceof TRPCError)) {
      throw new TRPCError({ code: 'BAD_REQUEST', message: err.message, cause: err });
    }
    throw err;
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}
