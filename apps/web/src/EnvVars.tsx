import { envVarProblem } from '@coderunner/api/client';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useId, useState } from 'react';
import { capitalize, errorText, useTRPC } from './api';
import { ReleaseActions } from './releases';
import { ConfirmButton, ErrorMessage, Loading } from './ui';

/**
 * A project's environment variables: listed masked (the server masks them; "Reveal values" asks it
 * for them), added or replaced, removed. A name and value are checked here with the API's own rules
 * (`@coderunner/api/client`), so the message is the one the server would give. Deployments keep the
 * variables they were created with: changes apply to the next deployment.
 */
export function EnvVars({
  projectId,
  currentDeploymentId,
}: {
  projectId: string;
  currentDeploymentId: string | null;
}) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const id = useId();
  const [reveal, setReveal] = useState(false);
  const [name, setName] = useState('');
  const [value, setValue] = useState('');
  const [problem, setProblem] = useState<string | null>(null);
  const [changed, setChanged] = useState('');
  // Revealed values are not kept once hidden (gcTime 0 drops that query as soon as nobody reads it).
  const list = useQuery(trpc.env.list.queryOptions({ projectId, reveal }, reveal ? { gcTime: 0 } : {}));
  const refresh = () => queryClient.invalidateQueries({ queryKey: trpc.env.list.pathKey() });
  const set = useMutation(
    trpc.env.set.mutationOptions({
      onSuccess: async (_r, input) => {
        await refresh();
        setName('');
        setValue('');
        setChanged(`Saved ${Object.keys(input.vars).join(', ')}.`);
      },
    }),
  );
  const unset = useMutation(
    trpc.env.unset.mutationOptions({
      onSuccess: async (r) => {
        await refresh();
        setChanged(
          r.removed.length ? `Removed ${r.removed.join(', ')}.` : `${r.notSet.join(', ')} was not set.`,
        );
      },
    }),
  );

  const submit = (e: FormEvent) => {
    e.preventDefault();
    const key = name.trim();
    const found = envVarProblem(key, value);
    setProblem(found);
    set.reset();
    if (!found) set.mutate({ projectId, vars: { [key]: value } });
  };
  // One place for the form's message, whether this page or the server found the problem.
  const formError = problem ? capitalize(problem) : set.error ? errorText(set.error) : null;

  return (
    <section className="card" aria-labelledby={`${id}-title`}>
      <h2 id={`${id}-title`}>Environment variables</h2>
      <p className="hint">
        Every new deployment gets these variables as they are when it is created. Changes apply to new
        deployments only: <strong>redeploy to apply</strong> them to the running app.
      </p>
      {(reveal || !!list.data?.items.length) && (
        <div className="actions">
          <button type="button" aria-pressed={reveal} onClick={() => setReveal((r) => !r)}>
            {reveal ? 'Hide values' : 'Reveal values'}
          </button>
        </div>
      )}
      {list.isPending ? (
        <Loading what="variables" />
      ) : list.error ? (
        <ErrorMessage error={list.error} />
      ) : list.data.items.length === 0 ? (
        <p className="empty">No variables yet.</p>
      ) : (
        <table className="env" aria-label="Variables">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Value</th>
              <th scope="col">
                <span className="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {list.data.items.map((v) => (
              <tr key={v.name}>
                <th scope="row">
                  <code className="wrap">{v.name}</code>
                </th>
                <td>
                  <code className="wrap">{v.value}</code>
                </td>
                <td>
                  <ConfirmButton
                    label="Remove"
                    confirmLabel={`Remove ${v.name}`}
                    question={`Remove ${v.name}? New deployments will not get it.`}
                    danger
                    pending={unset.isPending}
                    onConfirm={() => unset.mutate({ projectId, names: [v.name] })}
                  />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <ErrorMessage error={unset.error} />
      {changed && (
        <div className="actions">
          <span role="status">{changed} Redeploy to apply the change to the running app.</span>
          {currentDeploymentId && (
            <ReleaseActions
              deployment={{ id: currentDeploymentId, status: 'RUNNING', current: true }}
              redeployLabel="Redeploy now"
            />
          )}
        </div>
      )}
      <form onSubmit={submit} aria-labelledby={`${id}-form`} className="env-form">
        <h3 id={`${id}-form`}>Add or update a variable</h3>
        <label htmlFor={`${id}-name`}>Variable name</label>
        <input
          id={`${id}-name`}
          value={name}
          autoComplete="off"
          spellCheck={false}
          placeholder="API_KEY"
          onChange={(e) => {
            setName(e.target.value);
            setProblem(null);
          }}
          aria-invalid={formError ? true : undefined}
          aria-describedby={formError ? `${id}-error` : undefined}
        />
        <label htmlFor={`${id}-value`}>Value</label>
        <input
          id={`${id}-value`}
          value={value}
          autoComplete="off"
          spellCheck={false}
          onChange={(e) => {
            setValue(e.target.value);
            setProblem(null);
          }}
        />
        {formError && (
          <p className="error" role="alert" id={`${id}-error`}>
            {formError}
          </p>
        )}
        <button type="submit" className="primary" disabled={set.isPending}>
          {set.isPending ? 'Saving…' : 'Save variable'}
        </button>
      </form>
    </section>
  );
}
