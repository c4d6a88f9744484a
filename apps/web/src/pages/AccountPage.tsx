import { useMutation, useQuery } from '@tanstack/react-query';
import { type FormEvent, useId, useState } from 'react';
import { fieldError, useTRPC } from '../api';
import { ErrorMessage, formatDate, Loading } from '../ui';

export function AccountPage() {
  const trpc = useTRPC();
  const me = useQuery(trpc.auth.me.queryOptions());
  const usage = useQuery(trpc.auth.usage.queryOptions());
  return (
    <section>
      <h1>Account</h1>
      {me.data && (
        <p>
          Signed in as <strong>{me.data.email}</strong> since {formatDate(me.data.createdAt)}.
        </p>
      )}
      <h2>Plan</h2>
      {usage.isPending ? (
        <Loading what="your plan" />
      ) : usage.error ? (
        <ErrorMessage error={usage.error} />
      ) : (
        <>
          <p>
            You are on the <strong>{usage.data.plan}</strong> plan.
          </p>
          <Quota label="Projects" used={usage.data.used.projects} limit={usage.data.limits.projects} />
          <Quota
            label="Deployments holding a sandbox (pending to running)"
            used={usage.data.used.activeDeployments}
            limit={usage.data.limits.activeDeployments}
          />
        </>
      )}
      <ChangePassword />
    </section>
  );
}

function Quota({ label, used, limit }: { label: string; used: number; limit: number }) {
  const id = useId();
  return (
    <div className="quota">
      <label htmlFor={id}>
        {label}: {used} of {limit}
      </label>
      <meter id={id} min={0} max={limit} value={used} high={limit} />
    </div>
  );
}

function ChangePassword() {
  const trpc = useTRPC();
  const id = useId();
  const [currentPassword, setCurrent] = useState('');
  const [newPassword, setNew] = useState('');
  const change = useMutation(
    trpc.auth.changePassword.mutationOptions({
      onSuccess: () => {
        setCurrent('');
        setNew('');
      },
    }),
  );
  const submit = (e: FormEvent) => {
    e.preventDefault();
    change.mutate({ currentPassword, newPassword });
  };
  const newError = fieldError(change.error, 'newPassword');
  return (
    <form onSubmit={submit} className="card" aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>Change password</h2>
      <label htmlFor={`${id}-current`}>Current password</label>
      <input
        id={`${id}-current`}
        type="password"
        autoComplete="current-password"
        value={currentPassword}
        onChange={(e) => setCurrent(e.target.value)}
      />
      <label htmlFor={`${id}-new`}>New password</label>
      <input
        id={`${id}-new`}
        type="password"
        autoComplete="new-password"
        value={newPassword}
        onChange={(e) => setNew(e.target.value)}
        aria-invalid={newError ? true : undefined}
      />
      {newError ? <p className="field-error">{newError.replace('NewPassword', 'The new password')}</p> : null}
      {!newError && <ErrorMessage error={change.error} />}
      {change.isSuccess && <p role="status">Password changed. Your other sessions have been signed out.</p>}
      <button type="submit" className="primary" disabled={change.isPending}>
        {change.isPending ? 'Changing…' : 'Change password'}
      </button>
    </form>
  );
}
