import { isCodeRunnerError } from '@coderunner/api/client';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useSubscription } from '@trpc/tanstack-react-query';
import { useEffect, useRef, useState } from 'react';
import { AnsiText } from '../ansi';
import { useTRPC } from '../api';
import { type LogEnd, type LogLine, logEndOf, logEndText, logLinesOf } from '../logs';
import { ReleaseActions } from '../releases';
import { UsageCard } from '../UsageChart';
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

/** Lines kept on the page (the oldest go first). */
const MAX_LINES = 2_000;

export function DeploymentPage({ id }: { id: string }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const deployment = useQuery(trpc.deployments.get.queryOptions({ id }));
  // Live status: each change the server sees replaces the cached deployment.
  const watch = useSubscription(
    trpc.deployments.watch.subscriptionOptions(
      { id },
      {
        enabled: deployment.isSuccess && deployment.data.status !== 'DESTROYED',
        // A get still in flight answered with the state before this change: cancelled, so that it
        // cannot land after it. The watch carries no usage: the figures fetched last stay while it runs.
        onData: (d) => {
          const queryKey = trpc.deployments.get.queryKey({ id });
          void queryClient.cancelQueries({ queryKey }).then(() =>
            queryClient.setQueryData(queryKey, (old) => ({
              ...d,
              usage: d.status === 'RUNNING' ? (old?.usage ?? null) : null,
            })),
          );
        },
      },
    ),
  );
  const actionOptions = {
    onSuccess: () => queryClient.invalidateQueries({ queryKey: trpc.deployments.pathKey() }),
  };
  const stop = useMutation(trpc.deployments.stop.mutationOptions(actionOptions));
  const start = useMutation(trpc.deployments.start.mutationOptions(actionOptions));
  const destroy = useMutation(trpc.deployments.destroy.mutationOptions(actionOptions));

  if (deployment.isPending) return <Loading what="the deployment" />;
  if (deployment.error) {
    const missing = isCodeRunnerError(deployment.error) && deployment.error.data.code === 'NOT_FOUND';
    return (
      <section>
        <h1>{missing ? 'Deployment not found' : 'Deployment'}</h1>
        {missing ? <p>It does not exist, or it is not yours.</p> : <ErrorMessage error={deployment.error} />}
        <Link href="/">Back to your projects</Link>
      </section>
    );
  }
  const d = deployment.data;
  return (
    <section>
      <p className="crumbs">
        <Link href={`/projects/${d.projectId}`}>Back to the project</Link>
      </p>
      <h1>
        Deployment <code>{d.id.slice(0, 8)}</code>
      </h1>
      {d.status === 'FAILED' && (
        <div className="failure" role="alert">
          <strong>Why it failed</strong>
          <pre className="failure-reason">{d.failureReason ?? 'Its log no longer says why.'}</pre>
        </div>
      )}
      <dl className="facts">
        <dt>Status</dt>
        <dd aria-live="polite">
          <StatusBadge status={d.status} />
          {d.current && (
            <>
              {' '}
              <CurrentBadge /> <span className="muted small">the project URL serves it</span>
            </>
          )}
          {watch.status === 'connecting' && d.status !== 'DESTROYED' && (
            <span className="muted small"> (connecting for live updates…)</span>
          )}
        </dd>
        <dt>URL</dt>
        <dd>
          {d.publicUrl && d.status !== 'DESTROYED' ? (
            <a href={d.publicUrl} target="_blank" rel="noreferrer">
              {d.publicUrl}
            </a>
          ) : (
            <span className="muted">{d.publicUrl ? 'none any more' : 'given once it runs'}</span>
          )}
        </dd>
        <dt>Runtime</dt>
        <dd>{d.runtimeType ?? 'not detected yet'}</dd>
        <dt>Created</dt>
        <dd>{formatDate(d.createdAt)}</dd>
        <dt>Full id</dt>
        <dd>
          <code>{d.id}</code>
        </dd>
      </dl>
      <ErrorMessage error={watch.error} />
      {d.status !== 'DESTROYED' && (
        <div className="actions">
          {d.status === 'RUNNING' && (
            <ConfirmButton
              label="Stop"
              confirmLabel="Stop the app"
              question="Stop this app? Its URL stops answering until you start it again."
              pending={stop.isPending}
              onConfirm={() => stop.mutate({ id })}
            />
          )}
          {/* FAILED too: built again from its source, its restart count afresh. */}
          {(d.status === 'STOPPED' || d.status === 'FAILED') && (
            <button type="button" onClick={() => start.mutate({ id })} disabled={start.isPending}>
              {start.isPending ? 'Starting…' : d.status === 'FAILED' ? 'Start again' : 'Start'}
            </button>
          )}
          <ConfirmButton
            label="Destroy"
            confirmLabel="Destroy for good"
            question={
              d.hasDatabase
                ? "Destroy this deployment? The app and its URL are removed for good; the project's database stays for its other deployments (deleting the project drops it)."
                : 'Destroy this deployment? The app and its URL are removed for good.'
            }
            danger
            pending={destroy.isPending}
            onConfirm={() => destroy.mutate({ id })}
          />
          <ReleaseActions deployment={d} />
        </div>
      )}
      {d.status !== 'DESTROYED' && (
        <p className="hint small">
          {/* A FAILED deployment that never ran offers no rollback (see ReleaseActions). */}
          {d.status === 'FAILED' && d.publicUrl === null
            ? ''
            : 'Roll back: a new deployment of this source with the variables it ran with. '}
          Redeploy: this source with the project's variables as they are now. The project URL switches to it
          once it runs.
        </p>
      )}
      <ErrorMessage error={stop.error ?? start.error ?? destroy.error} />
      {d.status === 'RUNNING' && <UsageCard id={id} />}
      {d.hasDatabase && d.status !== 'DESTROYED' && <DatabaseCredentials id={id} />}
      <Logs id={id} />
    </section>
  );
}

function DatabaseCredentials({ id }: { id: string }) {
  const trpc = useTRPC();
  const [shown, setShown] = useState(false);
  const creds = useQuery({ ...trpc.deployments.databaseCredentials.queryOptions({ id }), enabled: shown });
  return (
    <div className="card">
      <h2>Database</h2>
      {!shown ? (
        <button type="button" onClick={() => setShown(true)}>
          Show database credentials
        </button>
      ) : creds.isPending ? (
        <Loading what="credentials" />
      ) : creds.error ? (
        <ErrorMessage error={creds.error} />
      ) : (
        <>
          <dl className="facts">
            <dt>Host</dt>
            <dd>
              <code>{creds.data.host}</code>
            </dd>
            <dt>Port</dt>
            <dd>
              <code>{creds.data.port}</code>
            </dd>
            <dt>User</dt>
            <dd>
              <code>{creds.data.user}</code>
            </dd>
            <dt>Password</dt>
            <dd>
              <code>{creds.data.password}</code>
            </dd>
            <dt>Database</dt>
            <dd>
              <code>{creds.data.database}</code>
            </dd>
            <dt>URL</dt>
            <dd>
              <code className="wrap">{creds.data.url}</code>
            </dd>
          </dl>
          <div className="actions">
            <button type="button" onClick={() => setShown(false)}>
              Hide credentials
            </button>
            <CopyButton text={creds.data.url} label="Copy connection URL" what="the connection URL" />
          </div>
        </>
      )}
    </div>
  );
}

/** Build and app logs, followed live; after a dropped connection the link resumes from the last line. */
function Logs({ id }: { id: string }) {
  const trpc = useTRPC();
  const [lines, setLines] = useState<LogLine[]>([]);
  const [end, setEnd] = useState<LogEnd | null>(null);
  const lastId = useRef(-1);
  const box = useRef<HTMLDivElement>(null);
  const sub = useSubscription(
    trpc.deployments.logs.subscriptionOptions(
      { id, follow: true, tail: 1000 },
      {
        onData: (event) => {
          const ended = logEndOf(event);
          if (ended) setEnd(ended);
          const fresh = logLinesOf(event).filter((l) => l.id > lastId.current);
          if (!fresh.length) return;
          lastId.current = fresh[fresh.length - 1]!.id;
          setLines((old) => [...old, ...fresh].slice(-MAX_LINES));
        },
      },
    ),
  );
  // Keep the newest line in view while the reader is at the bottom.
  useEffect(() => {
    const el = box.current;
    if (el && lines.length && el.scrollHeight - el.scrollTop - el.clientHeight < 80)
      el.scrollTop = el.scrollHeight;
  }, [lines]);
  return (
    <div className="logs">
      <h2>Logs</h2>
      <p className="muted small" aria-live="polite">
        {end ? (
          <>
            {logEndText(end)}
            {end.replacedBy && (
              <>
                {' '}
                <Link href={`/deployments/${end.replacedBy}`}>Open the newer deployment</Link>
              </>
            )}
          </>
        ) : sub.status === 'pending' ? (
          'Following live.'
        ) : sub.status === 'connecting' ? (
          'Connecting…'
        ) : sub.status === 'error' ? (
          'The log stream stopped.'
        ) : (
          'Not following.'
        )}
      </p>
      <ErrorMessage error={sub.error} />
      {sub.status === 'error' && (
        <button type="button" onClick={() => sub.reset()}>
          Reconnect
        </button>
      )}
      {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling region must be reachable from the keyboard */}
      <div ref={box} role="log" tabIndex={0} aria-label="Log lines" className="log-lines">
        {lines.length === 0
          ? 'No log lines yet.'
          : lines.map((l) => (
              <span key={l.id} className={`line ${l.stream}`}>
                {`${l.time.toLocaleTimeString()} [${l.source}] `}
                <AnsiText text={l.text} />
                {'\n'}
              </span>
            ))}
      </div>
    </div>
  );
}
