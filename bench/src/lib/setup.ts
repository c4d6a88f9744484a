import { client, register, withPg } from './http';

/** A user registered through the API, on `plan`, with `projects` projects created through the API. */
export async function userWithProjects(
  baseUrl: string,
  databaseUrl: string,
  opts: { email: string; password: string; plan: 'free' | 'personal' | 'team'; projects: number },
) {
  const { token, userId } = await register(baseUrl, opts.email, opts.password);
  await withPg(databaseUrl, (c) =>
    c.query('UPDATE users SET plan_type = $1 WHERE id = $2', [opts.plan, userId]),
  );
  const api = client(baseUrl, token);
  for (let i = 0; i < opts.projects; i++) {
    await api.projects.create.mutate({
      name: `project ${i + 1}`,
      description: `bench project number ${i + 1}`,
    });
  }
  return { token, userId, api };
}
