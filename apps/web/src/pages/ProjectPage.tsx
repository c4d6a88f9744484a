import type { RouterOutputs } from '@coderunner/api/client';
import { isCodeRunnerError } from '@coderunner/api/client';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useEffect, useId, useState } from 'react';
import { fieldError, useTRPC } from '../api';
import { DeployForm } from '../DeployForm';
import { EnvVars } from '../EnvVars';
import { ReleaseActions } from '../releases';
import { navigate } from '../router';
import {
  ConfirmButton,
  CopyButton,
  CurrentBadge,
  ErrorMessage,
  formatDate,
  Link,
  Loading,
  StatusBadge,
} from '../ui';

/** Statuses a deployment leaves by itself: while one is shown, the list refreshes. */
const IN_PROGRESS = new Set(['PENDING', 'PROVISIONING', 'BUILDING']);

export function ProjectPage({ id }: { id: string }) {
  const trpc = useTRPC();
  const project = useQuery(trpc.projects.get.queryOptions({ id }));
  if (project.isPending) return <Loading what="the project" />;
  if (project.error) {
    const missing = isCodeRunnerError(project.error) && project.error.data.code === 'NOT_FOUND';
    return (
      <section>
        <h1>{missing ? 'Project not found' : 'Project'}</h1>
        {missing ? <p>It does not exist, or it is not yours.</p> : <ErrorMessage error={project.error} />}
        <Link href="/">Back to your projects</Link>
      </section>
    );
  }
  const p = project.data;
  return (
    <section>
      <p className="crumbs">
        <Link href="/">Projects</Link> / {p.name}
      </p>
      <h1>{p.name}</h1>
      {p.description && <p>{p.description}</p>}
      <ProjectSettings project={p} />
      <ProjectUrl project={p} />
      <ProjectDatabase database={p.database} />
      <DeployForm projectId={p.id} />
      <EnvVars projectId={p.id} currentDeploymentId={p.currentDeploymentId} />
      <Deployments projectId={p.id} currentDeploymentId={p.currentDeploymentId} />
    </section>
  );
}

type Database = NonNullable<RouterOutputs['projects']['get']['database']>;

const megabytes = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(bytes < 10 * 1024 * 1024 ? 1 : 0)} MB`;

/** What the project's database is, for the page and the delete question. */
function databaseSummary(db: Database): string {
  const where =
    db.kind === 'own'
      ? 'its own PostgreSQL'
      : db.kind === 'shared'
        ? 'a PostgreSQL database on the shared cluster'
        : 'a PostgreSQL sandbox';
  return db.sizeBytes === null ? where : `${where}, ${megabytes(db.sizeBytes)}`;
}

/** The project's database: where it runs, its size against its cap, its limits and newest backup. */
function ProjectDatabase({ database }: { database: Database | null }) {
  const id = useId();
  if (!database) return null;
  return (
    <section className="card project-database" aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>Database</h2>
      <p>
        {database.kind === 'own'
          ? "A PostgreSQL of the project's own, kept across releases: every deploy, redeploy and rollback uses the same data."
          : database.kind === 'shared'
            ? 'A database on the shared PostgreSQL cluster (made by an earlier release): kept across releases, without backups.'
            : 'A PostgreSQL sandbox of the cloud provider, kept across releases.'}
      </p>
      <dl className="facts">
        {database.sizeBytes !== null && (
          <>
            <dt>Size</dt>
            <dd>
              {megabytes(database.sizeBytes)}
              {database.limits && ` of ${database.limits.diskMb} MB`}
            </dd>
          </>
        )}
        {database.limits && (
          <>
            <dt>Limits</dt>
            <dd>
              {database.limits.memoryMb} MB memory, {database.limits.cpus} CPU
            </dd>
          </>
        )}
        {database.kind === 'own' && (
          <>
            <dt>Last backup</dt>
            <dd>
              {database.lastBackup
                ? `${database.lastBackup.createdAt.toLocaleString()} (${database.lastBackup.reason}, ${megabytes(database.lastBackup.sizeBytes)}); ${database.backups} kept`
                : 'none yet (one is taken before each release, daily, and with coderunner db backup)'}
            </dd>
          </>
        )}
      </dl>
    </section>
  );
}

/** The project's stable URL, and which deployment it serves (its newest RUNNING one). */
function ProjectUrl({ project }: { project: { url: string | null; currentDeploymentId: string | null } }) {
  const id = useId();
  if (!project.url) return null; // a server that runs no deployments
  const current = project.currentDeploymentId;
  return (
    <section className="card project-url" aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>Project URL</h2>
      <div className="actions">
        <a href={project.url} target="_blank" rel="noreferrer" className="big-link">
          {project.url}
        </a>
        <CopyButton text={project.url} label="Copy URL" what="the project URL" />
      </div>
      <p aria-live="polite" className="serving">
        {current ? (
          <>
            Serving deployment{' '}
            <Link href={`/deployments/${current}`}>
              <code>{current.slice(0, 8)}</code>
            </Link>
            , the project's newest running deployment. Deploy again and it switches to the new one once that
            runs.
          </>
        ) : (
          'No deployment is running: the URL answers 503.'
        )}
      </p>
    </section>
  );
}

function Deployments({
  projectId,
  currentDeploymentId,
}: {
  projectId: string;
  currentDeploymentId: string | null;
}) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const list = useQuery(
    trpc.deployments.list.queryOptions(
      { projectId, limit: 50 },
      {
        refetchInterval: (q) => (q.state.data?.items.some((d) => IN_PROGRESS.has(d.status)) ? 1_500 : 10_000),
      },
    ),
  );
  // The list refreshes while deployments move; when it sees another current deployment than the
  // project said, the project (its URL card) is read again.
  const listCurrent = list.data ? (list.data.items.find((d) => d.current)?.id ?? null) : undefined;
  useEffect(() => {
    if (listCurrent !== undefined && listCurrent !== currentDeploymentId)
      void queryClient.invalidateQueries({ queryKey: trpc.projects.get.queryKey({ id: projectId }) });
  }, [listCurrent, currentDeploymentId, projectId, queryClient, trpc]);
  return (
    <>
      <h2>Deployments</h2>
      {list.isPending ? (
        <Loading what="deployments" />
      ) : list.error ? (
        <ErrorMessage error={list.error} />
      ) : list.data.items.length === 0 ? (
        <p className="empty">Nothing deployed yet. Choose a folder above to deploy it.</p>
      ) : (
        <ul className="cards" aria-label="Deployments, newest first">
          {list.data.items.map((d) => (
            <li key={d.id} className="row">
              <Link href={`/deployments/${d.id}`}>
                Deployment <code>{d.id.slice(0, 8)}</code>
              </Link>
              <StatusBadge status={d.status} />
              {d.current && <CurrentBadge />}
              <span className="muted small">
                {d.runtimeType ?? 'runtime not detected yet'} · {formatDate(d.createdAt)}
              </span>
              {d.status !== 'DESTROYED' && (
                <span className="row-actions">
                  <ReleaseActions deployment={d} />
                </span>
              )}
            </li>
          ))}
        </ul>
      )}
    </>
  );
}

function ProjectSettings({
  project,
}: {
  project: { id: string; name: string; description: string | null; database: Database | null };
}) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const id = useId();
  const [editing, setEditing] = useState(false);
  const [name, setName] = useState(project.name);
  const [description, setDescription] = useState(project.description ?? '');
  const update = useMutation(
    trpc.projects.update.mutationOptions({
      onSuccess: async () => {
        await queryClient.invalidateQueries({ queryKey: trpc.projects.pathKey() });
        setEditing(false);
      },
    }),
  );
  const remove = useMutation(
    trpc.projects.delete.mutationOptions({
      onSuccess: async () => {
        queryClient.removeQueries({ queryKey: trpc.projects.get.queryKey({ id: project.id }) });
        await queryClient.invalidateQueries({ queryKey: trpc.projects.list.pathKey() });
        navigate('/');
      },
    }),
  );
  const submit = (e: FormEvent) => {
    e.preventDefault();
    update.mutate({ id: project.id, name, description: description || null });
  };
  if (!editing)
    return (
      <div className="actions">
        <button type="button" onClick={() => setEditing(true)}>
          Rename or edit description
        </button>
        <ConfirmButton
          label="Delete project"
          confirmLabel="Delete it for good"
          question={`Delete ${project.name} and all its deployments${
            project.database
              ? `, including its database (${databaseSummary(project.database)})${project.database.kind === 'own' ? '; a last backup is kept for 7 days, for the operator' : ''}`
              : ''
          }? This cannot be undone.`}
          danger
          pending={remove.isPending}
          onConfirm={() => remove.mutate({ id: project.id })}
        />
        <ErrorMessage error={remove.error} />
      </div>
    );
  const nameError = fieldError(update.error, 'name');
  return (
    <form onSubmit={submit} className="card" aria-label="Edit project">
      <label htmlFor={`${id}-name`}>Name</label>
      <input
        id={`${id}-name`}
        value={name}
        onChange={(e) => setName(e.target.value)}
        aria-invalid={nameError ? true : undefined}
      />
      {nameError && <p className="field-error">{nameError}</p>}
      <label htmlFor={`${id}-description`}>Description</label>
      <input id={`${id}-description`} value={description} onChange={(e) => setDescription(e.target.value)} />
      {!nameError && <ErrorMessage error={update.error} />}
      <div className="actions">
        <button type="submit" className="primary" disabled={update.isPending}>
          {update.isPending ? 'Saving…' : 'Save'}
        </button>
        <button type="button" onClick={() => setEditing(false)}>
          Cancel
        </button>
      </div>
    </form>
  );
}
