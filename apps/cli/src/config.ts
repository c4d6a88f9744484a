/**
 * The CLI's saved state: which server, which account, and its token. One small JSON file, readable by
 * its owner only (0600 in a 0700 folder), replaced atomically so a crash or a concurrent command
 * never leaves half a file.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CliError } from './errors';

export interface SavedConfig {
  /** Base URL of the server the token belongs to, e.g. http://localhost:8080 */
  apiUrl?: string;
  /** The account the token was issued to (for display only). */
  email?: string;
  token?: string;
}

/** `$CODERUNNER_CONFIG_DIR`, else `$XDG_CONFIG_HOME/coderunner`, else `~/.config/coderunner`. */
export function configDir(env: NodeJS.ProcessEnv): string {
  if (env.CODERUNNER_CONFIG_DIR) return path.resolve(env.CODERUNNER_CONFIG_DIR);
  // The XDG spec says to ignore a relative XDG_CONFIG_HOME.
  const xdg = env.XDG_CONFIG_HOME && path.isAbsolute(env.XDG_CONFIG_HOME) ? env.XDG_CONFIG_HOME : undefined;
  return path.join(xdg ?? path.join(os.homedir(), '.config'), 'coderunner');
}

const FIELDS = ['apiUrl', 'email', 'token'] as const;

export class ConfigStore {
  readonly dir: string;
  readonly file: string;

  constructor(env: NodeJS.ProcessEnv) {
    this.dir = configDir(env);
    this.file = path.join(this.dir, 'config.json');
  }

  read(): SavedConfig {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw new CliError(`cannot read ${this.file}: ${(err as Error).message}`, undefined, { cause: err });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new CliError(`${this.file} is not valid JSON: fix it or delete it`, undefined, { cause: err });
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new CliError(`${this.file} must hold a JSON object: fix it or delete it`);
    }
    const config: SavedConfig = {};
    for (const key of FIELDS) {
      const value = (parsed as Record<string, unknown>)[key];
      if (typeof value === 'string' && value) config[key] = value;
    }
    return config;
  }

  /** Replace the file with `config` (fields left undefined are dropped). */
  write(config: SavedConfig): void {
    const clean: SavedConfig = {};
    for (const key of FIELDS) if (config[key]) clean[key] = config[key];
    try {
      this.ensureDir();
      const tmp = path.join(this.dir, `.config.json.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
      // 'wx' refuses to follow a planted file or symlink; 0600 from the first byte written.
      const fd = fs.openSync(tmp, 'wx', 0o600);
      try {
        fs.writeFileSync(fd, `${JSON.stringify(clean, null, 2)}\n`);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      try {
        fs.renameSync(tmp, this.file);
      } catch (err) {
        fs.rmSync(tmp, { force: true });
        throw err;
      }
    } catch (err) {
      if (err instanceof CliError) throw err;
      throw new CliError(`cannot write ${this.file}: ${(err as Error).message}`, undefined, { cause: err });
    }
  }

  update(change: (current: SavedConfig) => SavedConfig): SavedConfig {
    const next = change(this.read());
    this.write(next);
    return next;
  }

  private ensureDir(): void {
    if (fs.existsSync(this.dir)) return;
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    fs.chmodSync(this.dir, 0o700); // whatever the umask
  }
}
