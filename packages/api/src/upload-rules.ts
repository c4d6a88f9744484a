/**
 * Which files of a folder a deployment uploads: what git would commit, whether or not the folder is a
 * git repository. One set of rules for every packer (the CLI's, on disk; the dashboard's, in a
 * browser), so that a folder deploys the same from either. Plain functions over paths: no file system.
 *
 * What is left out, by rules applied the way git applies them:
 * - always: `node_modules` and `.git`, anywhere (no rule can bring them back);
 * - by default: `.venv` and `__pycache__` folders (a `!` rule in an ignore file brings them back);
 * - whatever a `.gitignore` says, at the top or in any subfolder (its rules apply below its folder,
 *   the deepest file that has a say wins, and a file inside an ignored folder cannot be brought back);
 * - whatever a `.coderunnerignore` says: the same syntax, read after the `.gitignore` of its folder,
 *   so it can also bring back (`!dist/`) what `.gitignore` leaves out.
 */
import ignore, { type Ignore } from 'ignore';

/** Never uploaded, whatever an ignore file says. */
export const ALWAYS_IGNORED: readonly string[] = ['node_modules', '.git'];
/** Left out unless an ignore file brings them back with `!`. */
export const DEFAULT_IGNORE_RULES: readonly string[] = ['.venv/', '__pycache__/'];
/** Read in this order in each folder. */
export const IGNORE_FILES: readonly string[] = ['.gitignore', '.coderunnerignore'];

/**
 * The lines of an ignore file in folder `base` (relative to the packed folder), rewritten to apply
 * from the packed folder's top, so that one rule list in git's order of precedence (defaults, then
 * each folder's files, parents before children) decides, the last matching rule winning:
 * - a pattern with a slash before its end is anchored to its file's folder: `base/pattern`;
 * - one without matches at any depth below that folder: `base/<any folders>/pattern`.
 */
export function rebaseRules(text: string, base: string): string[] {
  const rules: string[] = [];
  for (const raw of text.replace(/^\uFEFF/, '').split(/\r?\n/)) {
    if (!raw.trim() || raw.startsWith('#')) continue;
    if (!base) {
      rules.push(raw);
      continue;
    }
    const negated = raw.startsWith('!');
    const pattern = negated ? raw.slice(1) : raw;
    const body = pattern.replace(/\/+$/, '');
    const anchored = body.includes('/');
    const rebased = anchored ? `${base}/${pattern.replace(/^\/+/, '')}` : `${base}/**/${pattern}`;
    rules.push(`${negated ? '!' : ''}${rebased}`);
  }
  return rules;
}

/** The rule list a walk starts with (the defaults); add each folder's ignore files as the walk enters it. */
export function uploadRules(): Ignore {
  return ignore().add([...DEFAULT_IGNORE_RULES]);
}
