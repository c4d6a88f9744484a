/**
 * What the server says first, in plain words on stderr, when deployed apps will run unisolated: a
 * fresh machine after the README's two commands has no bubblewrap or passt, and one JSON log line
 * among many is easy to miss.
 */
import { UNISOLATED_OPEN_SIGNUP_ACCEPTANCE, UNISOLATED_OPEN_SIGNUP_VARIABLE } from '@coderunner/api';
import { detectIsolation, INSTALL_HINT } from '@coderunner/sandbox';
import type { Config } from './config';

/** The notice's lines, or null when apps will be isolated (or the server will refuse to start anyway). */
export function isolationNotice(config: Config): string[] | null {
  if (config.SANDBOX_PROVIDER !== 'local') return null;
  let missing: string[];
  try {
    const status = detectIsolation(config.CODERUNNER_ISOLATION);
    if (status.mode === 'sandbox') return null;
    missing = status.missing;
  } catch {
    return null; // CODERUNNER_ISOLATION=sandbox without the tools: the start fails with what is missing.
  }
  const lines = [
    "TENANT ISOLATION IS OFF: deployed apps can read each other's files, environment and databases, and reach every service on this machine.",
  ];
  if (config.CODERUNNER_ISOLATION === 'none') {
    lines.push(
      `  CODERUNNER_ISOLATION=none turns it off. Unset it to isolate apps (needs root and, on Debian: apt-get update && ${INSTALL_HINT}).`,
    );
  } else {
    lines.push(`  Missing: ${missing.join('; ')}.`);
    lines.push(`  To isolate apps (Debian): apt-get update && ${INSTALL_HINT}`);
    lines.push('  then start CodeRunner again as root. (README: "Tenant isolation".)');
  }
  lines.push(
    config[UNISOLATED_OPEN_SIGNUP_VARIABLE] === undefined
      ? `  Until then sign-up closes after the first account (${UNISOLATED_OPEN_SIGNUP_VARIABLE}=${UNISOLATED_OPEN_SIGNUP_ACCEPTANCE} keeps it open).`
      : `  Sign-up stays open to anyone (${UNISOLATED_OPEN_SIGNUP_VARIABLE}): every account can read the others' apps and secrets.`,
  );
  return lines;
}
