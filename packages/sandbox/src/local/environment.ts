/**
 * The environment of sandbox processes, built from nothing: the server's own environment
 * (DATABASE_URL, secrets, tokens) never reaches users' code.
 */

/** A standard PATH: no server-specific tool folders (pyenv, nvm under /root, ...). */
export const SANDBOX_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Markers in every sandbox process's environment: they find processes that left their process group. */
export const SANDBOX_ID_VAR = 'CODERUNNER_SANDBOX_ID';
export const PROCESS_KIND_VAR = 'CODERUNNER_PROCESS';
export type ProcessKind = 'app' | 'command';

export interface EnvironmentOptions {
  sandboxId: string;
  kind: ProcessKind;
  home: string;
  /** The OS user the code runs as (USER/LOGNAME); tools such as pip read it. */
  user?: string;
  /** Later layers win: the sandbox's envs, then the command's. */
  layers: (Record<string, string> | undefined)[];
  /** Set last, over every layer (e.g. PORT, which must match what the server expects). */
  forced?: Record<string, string>;
}

export function sandboxEnvironment(opts: EnvironmentOptions): Record<string, string> {
  const base: Record<string, string> = {
    PATH: SANDBOX_PATH,
    HOME: opts.home,
    LANG: 'C.UTF-8',
    // npm keeps its cache in the sandbox's home (writable by the sandbox user) and stays quiet.
    npm_config_cache: `${opts.home}/.npm`,
    npm_config_update_notifier: 'false',
    npm_config_fund: 'false',
    npm_config_audit: 'false',
    PIP_DISABLE_PIP_VERSION_CHECK: '1',
    ...(opts.user ? { USER: opts.user, LOGNAME: opts.user } : {}),
  };
  return Object.assign(base, ...opts.layers, opts.forced, markers(opts.sandboxId, opts.kind));
}

/** The environment entries ("NAME=value") that mark processes of this sandbox (and kind). */
export function markerEntries(sandboxId: string, kind?: ProcessKind): string[] {
  return Object.entries(markers(sandboxId, kind)).map(([name, value]) => `${name}=${value}`);
}

function markers(sandboxId: string, kind?: ProcessKind): Record<string, string> {
  return { [SANDBOX_ID_VAR]: sandboxId, ...(kind ? { [PROCESS_KIND_VAR]: kind } : {}) };
}
