/** Project commands: projects list | create | show | rename | delete. */
import { type Command, InvalidArgumentError } from 'commander';
import { handler } from '../context';
import { cell, printable, shortDate } from '../output';
import { confirmOrRefuse } from '../prompt';
import { allProjects, resolveProject } from '../resolve';
import { databaseText, type Project, projectJson } from '../views';
import { examples } from './help';

function positiveInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw new InvalidArgumentError('must be a whole number of at least 1');
  }
  return n;
}

const PAGE_MAX = 100; // the API's largest page

export function registerProjectCommands(program: Command): void {
  const projects = program
    .command('projects')
    .description('list, create, show, rename and delete your projects');
  examples(projects, ['coderunner projects list', 'coderunner projects create web --description "my site"']);

  examples(
    projects
      .command('list')
      .alias('ls')
      .description('list your projects, newest first')
      .option('--limit <n>', 'show at most this many projects (default: all)', positiveInt),
    ['coderunner projects list', 'coderunner projects list --limit 5 --json'],
  ).action(
    handler<{ limit?: number }>(async (ctx, _args, opts) => {
      const client = ctx.client();
      const found: Project[] = [];
      const limit = opts.limit ?? Number.POSITIVE_INFINITY;
      for await (const p of allProjects(client, Math.min(PAGE_MAX, limit))) {
        if (found.length >= limit) break;
        found.push(p);
      }
      if (ctx.json) {
        ctx.out.printJson(found.map(projectJson));
        return;
      }
      if (!found.length) {
        ctx.out.print('No projects yet: create one with `coderunner projects create <name>`');
        return;
      }
      ctx.out.table(
        ['NAME', 'ID', 'CREATED', 'DESCRIPTION'],
        found.map((p) => [cell(p.name, 40), p.id, shortDate(p.createdAt), cell(p.description ?? '', 60)]),
      );
    }),
  );

  examples(
    projects
      .command('create')
      .description('create a project')
      .argument('<name>', 'a name unique among your projects')
      .option('--description <text>', 'what the project is'),
    ['coderunner projects create web', 'coderunner projects create api --description "the backend" --json'],
  ).action(
    handler<{ description?: string }>(async (ctx, [name], opts) => {
      const project = await ctx.client().projects.create.mutate({
        name: name!,
        ...(opts.description !== undefined ? { description: opts.description } : {}),
      });
      if (ctx.json) ctx.out.printJson(projectJson(project));
      else ctx.out.print(`Created project ${ctx.out.style(printable(project.name), 'bold')} (${project.id})`);
    }),
  );

  examples(
    projects
      .command('show')
      .alias('get')
      .description('show one project')
      .argument('<project>', 'project name or id'),
    ['coderunner projects show web', 'coderunner projects show 3f0c…-uuid --json'],
  ).action(
    handler(async (ctx, [ref]) => {
      const client = ctx.client();
      const project = await client.projects.get.query({ id: (await resolveProject(client, ref!)).id });
      if (ctx.json) {
        ctx.out.printJson({ ...projectJson(project), database: project.database });
        return;
      }
      ctx.out.fields([
        ['name', printable(project.name)],
        ['id', project.id],
        ['description', project.description === null ? '-' : printable(project.description)],
        ['url', project.url ?? '-'],
        [
          'serving',
          project.currentDeploymentId
            ? `deployment ${project.currentDeploymentId}`
            : '- (no deployment is running: the URL answers 503)',
        ],
        ['database', project.database ? databaseText(project.database) : '-'],
        ['created', shortDate(project.createdAt)],
        ['updated', shortDate(project.updatedAt)],
      ]);
    }),
  );

  examples(
    projects
      .command('rename')
      .description('rename a project')
      .argument('<project>', 'project name or id')
      .argument('<new-name>', 'the new name, unique among your projects'),
    ['coderunner projects rename web website'],
  ).action(
    handler(async (ctx, [ref, newName]) => {
      const client = ctx.client();
      const before = await resolveProject(client, ref!);
      const project = await client.projects.update.mutate({ id: before.id, name: newName! });
      if (ctx.json) ctx.out.printJson(projectJson(project));
      else ctx.out.print(`Renamed project ${printable(before.name)} to ${printable(project.name)}`);
    }),
  );

  examples(
    projects
      .command('delete')
      .alias('rm')
      .description('delete a project and everything in it (asks first unless --yes)')
      .argument('<project>', 'project name or id')
      .option('-y, --yes', 'do not ask for confirmation (needed when there is no terminal)'),
    ['coderunner projects delete web', 'coderunner projects delete web --yes --json'],
  ).action(
    handler<{ yes?: boolean }>(async (ctx, [ref], opts) => {
      const client = ctx.client();
      const project = await client.projects.get.query({ id: (await resolveProject(client, ref!)).id });
      const db = project.database;
      // The database is what a deletion loses for good: name it, with its size.
      const withDatabase = db
        ? `, including its database (${databaseText(db)})${db.kind === 'own' ? '; a last backup is kept for 7 days, for the operator' : ''}`
        : '';
      await confirmOrRefuse({
        yes: opts.yes,
        refused: `not deleting project "${printable(project.name)}"`,
        question: `Delete project ${printable(project.name)} (${project.id}) and everything in it${withDatabase}?`,
        declined: 'not deleted',
      });
      await client.projects.delete.mutate({ id: project.id });
      if (ctx.json) ctx.out.printJson({ id: project.id, name: project.name, deleted: true });
      else ctx.out.print(`Deleted project ${printable(project.name)} (${project.id})`);
    }),
  );
}
