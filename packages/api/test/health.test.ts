import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setupApi, type TestApi } from './helpers';

let api: TestApi;
beforeAll(async () => {
  api = await setupApi();
});
afterAll(() => api.close());

describe('health', () => {
  it('answers through createCaller with the inner context (no HTTP)', async () => {
    const health = await api.caller().health();
    expect(health).toMatchObject({ status: 'ok', database: true });
    expect(health.time).toBeInstanceOf(Date);
  });
});
