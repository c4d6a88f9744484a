import fs from 'node:fs';

/** Replaced with the package's version when the bundle is built (see tsup.config.ts). */
declare const __CODERUNNER_CLI_VERSION__: string | undefined;

function packageVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

export const VERSION: string =
  typeof __CODERUNNER_CLI_VERSION__ === 'string' ? __CODERUNNER_CLI_VERSION__ : packageVersion();
