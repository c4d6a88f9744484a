import { useInfiniteQuery, useMutation, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useId, useState } from 'react';
import { client, fieldError, useTRPC } from '../api';
import { navigate } from '../router';
import { ErrorMessage, formatDate, Link, Loading } from '../ui';

export function ProjectsPage() {
  const trpc = useTRPC();
  // Pages by cursor (the list's input is strict, so not tRPC's infiniteQueryOptions, which adds a
  // `direction`); keyed under projects.list so that invalidating the list refreshes it.
  const projects = useInfiniteQuery({
    queryKey: [...trpc.projects.list.pathKey(), 'pages'],
    queryFn: ({ pageParam }) => client.projects.list.query({ limit: 20, cursor: pageParam }),
    initialPageParam: null as string | null,
    getNextPageParam: (page) => page.nextCursor,
  });
  const items = projects.data?.pages.flatMap((p) => p.items) ?? [];

  return (
    <section>
      <h1>Projects</h1>
      <CreateProject />
      <h2>Your projects</h2>
      {projects.isPending ? (
        <Loading what="projects" />
      ) : projects.error ? (
        <ErrorMessage error={projects.error} />
      ) : items.length === 0 ? (
        <p className="empty">No projects yet. Create one above, then deploy a folder to it.</p>
      ) : (
        <ul className="cards" aria-label="Projects">
          {items.map((p) => (
            <li key={p.id}>
              <Link href={`/projects/${p.id}`}>{p.name}</Link>
              {p.description && <p className="muted">{p.description}</p>}
              <p className="muted small">Created {formatDate(p.createdAt)}</p>
            </li>
          ))}
        </ul>
      )}
      {projects.hasNextPage && (
        <button type="button" onClick={() => projects.fetchNextPage()} disabled={projects.isFetchingNextPage}>
          {projects.isFetchingNextPage ? 'Loading…' : 'Show more projects'}
        </button>
      )}
    </section>
  );
}

function CreateProject() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const id = useId();
  const [name, setName] = useState('');
  const [description, setDescription] = useState('');
  const create = useMutation(
    trpc.projects.create.mutationOptions({
      onSuccess: async (project) => {
        await queryClient.invalidateQueries({ queryKey: trpc.projects.list.pathKey() });
        navigate(`/projects/${project.id}`);
      },
    }),
  );
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate({ name, ...(description ? { description } : {}) });
  };
  const nameError = fieldError(create.error, 'name');
  const descriptionError = fieldError(create.error, 'description');
  return (
    <form onSubmit={submit} className="card" aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>New project</h2>
      <label htmlFor={`${id}-name`}>Name</label>
      <input
        id={`${id}-name`}
        required
        value={name}
        onChange={(e) => setName(e.target.value)}
        aria-invalid={nameError ? true : undefined}
        aria-describedby={nameError ? `${id}-name-error` : undefined}
      />
      {nameError && (
        <p className="field-error" id={`${id}-name-error`}>
          {nameError}
        </p>
      )}
      <label htmlFor={`${id}-description`}>Description (optional)</label>
      <input id={`${id}-description`} value={description} onChange={(e) => setDescription(e.target.value)} />
      {descriptionError && <p className="field-error">{descriptionError}</p>}
      {!nameError && !descriptionError && <ErrorMessage error={create.error} />}
      <button type="submit" className="primary" disabled={create.isPending}>
        {create.isPending ? 'Creating…' : 'Create project'}
      </button>
    </form>
  );
}
