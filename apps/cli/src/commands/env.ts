/**
 * `coderunner env set | unset | list`: a project's environment variables. They are stored encrypted
 * on the server; a deployment gets the values the project has when it is created (redeploy to apply
 * a change). Names are checked here with the server's own rules and messages before anything is sent.
 */
import fs from 'node:fs';
import { envVarProblem, splitEnvAssignment } from '@coderunner/api/client';
import type { Command } from 'commander';
import { parse as parseDotenv } from 'dotenv';
import { type Context, handler } from '../context';
import { UsageError } from '../errors';
import { cell, printable } from '../output';
import { resolveProject } from '../resolve';
import type { Project } from '../views';
import { examples } from './help';

interface ProjectOption {
  project?: string;
}

/** `--project`, else $CODERUNNER_PROJECT (as deploy does), resolved by name or id. */
async function projectOf(ctx: Context, opts: ProjectOption): Promise<Project> {
  const ref = opts.project ?? ctx.env.CODERUNNER_PROJECT?.trim();
  if (!ref) {
    throw new UsageError(
      'which project? pass --project <name or id> (or set CODERUNNER_PROJECT); `coderunner projects list` shows yours',
    );
  }
  return resolveProject(ctx.client(), ref);
}

/** `NAME=value` words (as after `env set` or `deploy --env`), checked; later ones win. */
export function parseAssignments(words: readonly string[], into: Record<string, string> = {}) {
  for (const word of words) {
    const pair = splitEnvAssignment(word);
    if (!pair) throw new UsageError(`expected NAME=value, got "${printable(word)}"`);
    checkVar(pair.name, pair.value);
    into[pair.name] = pair.value;
  }
  return into;
}

function checkVar(name: string, value: string): void {
  const problem = envVarProblem(name, value);
  if (problem) throw new UsageError(problem);
}

/** The variables of a dotenv file (comments, quotes, `export ` prefixes), checked. */
function readDotenvFile(file: string): Record<string, string> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(
      `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  const vars = parseDotenv(text);
  for (const [name, value] of Object.entries(vars)) checkVar(name, value);
  return vars;
}

const projectFlag = [
  '-p, --project <project>',
  'the project (name or id; default: $CODERUNNER_PROJECT)',
] as const;

export function registerEnvCommands(program: Command): void {
  const env = program
    .command('env')
    .description(
      "a project's environment variables (stored encrypted; each deployment keeps the values it was created with)",
    )
    .addHelpText(
      'after',
      `
A deployment gets the project's variables as they are when it is created, plus its own
(\`coderunner deploy --env NAME=value\`); changing them later changes no existing deployment:
deploy again to apply a change. Names: letters, digits and _, not starting with a digit; PORT,
DATABASE_URL, PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, HOME, PATH and CODERUNNER_* are set
by the platform. Values: up to 32 KiB each; at most 100 variables, 64 KiB in all.`,
    );
  examples(env, [
    'coderunner env set API_KEY=abc123 DEBUG=1 --project web',
    'coderunner env list --project web',
  ]);

  examples(
    env
      .command('set')
      .description('set variables of a project (replacing those of the same name)')
      .argument('[assignments...]', 'NAME=value pairs')
      .option(...projectFlag)
      .option(
        '-f, --from-file <file>',
        'also read variables from a dotenv file (NAME=value lines, # comments, quotes, export)',
      ),
    [
      'coderunner env set API_KEY=abc123 --project web',
      'coderunner env set --from-file .env --project web',
      'coderunner env set --from-file .env LOG_LEVEL=debug --project web --json',
    ],
  ).action(
    handler<ProjectOption & { fromFile?: string }>(async (ctx, words, opts) => {
      const vars = opts.fromFile ? readDotenvFile(opts.fromFile) : {};
      parseAssignments(words, vars);
      if (!Object.keys(vars).length) {
        throw new UsageError(
          opts.fromFile
            ? `${opts.fromFile} holds no variables`
            : 'give NAME=value pairs, or --from-file <file>',
        );
      }
      const project = await projectOf(ctx, opts);
      const result = await ctx.client().env.set.mutate({ projectId: project.id, vars });
      const names = Object.keys(vars).sort();
      if (ctx.json) {
        ctx.out.printJson({ projectId: project.id, set: names, variables: result.items });
        return;
      }
      ctx.out.print(`Set ${names.join(', ')} in project ${printable(project.name)}`);
      ctx.out.info('Deployments get them from their next deploy: `coderunner deploy` to apply.');
    }),
  );

  examples(
    env
      .command('unset')
      .alias('rm')
      .description('remove variables from a project (names not set are reported, not an error)')
      .argument('<names...>', 'variable names')
      .option(...projectFlag),
    ['coderunner env unset API_KEY DEBUG --project web'],
  ).action(
    handler<ProjectOption>(async (ctx, list, opts) => {
      const project = await projectOf(ctx, opts);
      const result = await ctx.client().env.unset.mutate({ projectId: project.id, names: list });
      if (ctx.json) {
        ctx.out.printJson({
          projectId: project.id,
          removed: result.removed,
          notSet: result.notSet,
          variables: result.items,
        });
        return;
      }
      if (result.removed.length)
        ctx.out.print(`Unset ${result.removed.join(', ')} in project ${printable(project.name)}`);
      if (result.notSet.length)
        ctx.out.warn(`not set, nothing to do: ${result.notSet.map(printable).join(', ')}`);
    }),
  );

  examples(
    env
      .command('list')
      .alias('ls')
      .description("list a project's variables, values masked unless --reveal")
      .option(...projectFlag)
      .option('--reveal', 'show the values'),
    [
      'coderunner env list --project web',
      'coderunner env list --project web --reveal',
      'coderunner env list --project web --reveal --json | jq -r .variables[0].value',
    ],
  ).action(
    handler<ProjectOption & { reveal?: boolean }>(async (ctx, _args, opts) => {
      const project = await projectOf(ctx, opts);
      const { items } = await ctx
        .client()
        .env.list.query({ projectId: project.id, reveal: opts.reveal === true });
      if (ctx.json) {
        ctx.out.printJson({ projectId: project.id, revealed: opts.reveal === true, variables: items });
        return;
      }
      if (!items.length) {
        ctx.out.print(
          `No variables in project ${printable(project.name)}: set one with \`coderunner env set NAME=value --project ${printable(project.name)}\``,
        );
        return;
      }
      ctx.out.table(
        ['NAME', 'VALUE'],
        items.map((v) => [v.name, cell(v.value)]),
      );
    }),
  );
}
