/** Random inputs to every procedure: the API may refuse them, but never with a server error. */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setupApi, type TestApi } from './helpers';

let api: TestApi;
let token: string;
beforeAll(async () => {
  api = await setupApi();
  token = (await api.register()).token;
});
afterAll(() => api.close());

const anything = fc.oneof(
  fc.anything(),
  fc.record({ email: fc.string(), password: fc.string() }),
  fc.record(
    { name: fc.string({ maxLength: 300 }), description: fc.option(fc.string()) },
    { requiredKeys: [] },
  ),
  fc.record({ id: fc.oneof(fc.uuid(), fc.string()), name: fc.string() }, { requiredKeys: [] }),
  fc.record({ cursor: fc.oneof(fc.string(), fc.base64String()), limit: fc.integer() }, { requiredKeys: [] }),
  fc.record({ currentPassword: fc.string(), newPassword: fc.string() }),
);

const PROCEDURES = [
  'auth.register',
  'auth.login',
  'auth.me',
  'auth.changePassword',
  'projects.create',
  'projects.list',
  'projects.get',
  'projects.update',
  'projects.delete',
] as const;

describe('property: no input produces a server error', () => {
  it('random inputs, with and without a token', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...PROCEDURES),
        anything,
        fc.boolean(),
        async (path, input, authed) => {
          const caller = api.caller(authed ? token : null) as unknown as Record<
            string,
            Record<string, (i: unknown) => Promise<unknown>>
          >;
          const [ns, proc] = path.split('.') as [string, string];
          try {
            await caller[ns]![proc]!(input);
          } catch (err) {
            const code = (err as { code?: string }).code;
            expect(code, `${path}(${JSON.stringify(input)}) → ${(err as Error).message}`).not.toBe(
              'INTERNAL_SERVER_ERROR',
            );
            expect(code).toBeDefined();
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
