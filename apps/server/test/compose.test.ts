import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CONFIG_VARIABLES, loadConfig } from '../src/config';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

describe('docker-compose.yml (no Docker engine here: parsed and checked)', () => {
  const compose = parse(fs.readFileSync(path.join(root, 'docker-compose.yml'), 'utf8'));

  it('has a PostgreSQL >= 15 service with a named volume and a health check', () => {
    const pg = compose.services.postgres;
    const major = Number(/^postgres:(\d+)/.exec(pg.image)?.[1]);
    expect(major).toBeGreaterThanOrEqual(15);
    const volume = String(pg.volumes[0]).split(':')[0]!;
    expect(Object.keys(compose.volumes)).toContain(volume);
    expect(pg.healthcheck.test.join(' ')).toContain('pg_isready');
  });

  it('builds the server from the repo and wires it with variables the server accepts', () => {
    const server = compose.services.server;
    expect(server.build).toBe('.');
    expect(fs.existsSync(path.join(root, 'Dockerfile'))).toBe(true);
    expect(server.depends_on.postgres.condition).toBe('service_healthy');
    const env = server.environment as Record<string, string>;
    const config = loadConfig(env); // throws on any value the server would refuse
    const pg = compose.services.postgres.environment;
    expect(config.DATABASE_URL).toBe(
      `postgres://${pg.POSTGRES_USER}:${pg.POSTGRES_PASSWORD}@postgres:5432/${pg.POSTGRES_DB}`,
    );
    expect(server.ports).toContain(`${config.PORT}:${config.PORT}`);
    expect(config.HOST).toBe('0.0.0.0');
    // Every variable set for the server is one it reads.
    for (const name of Object.keys(env)) expect(CONFIG_VARIABLES, name).toContain(name);
  });
});
