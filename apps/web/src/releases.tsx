import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useTRPC } from './api';
import { navigate } from './router';
import { ErrorMessage } from './ui';

/**
 * "Roll back to this" (a new deployment of this one's stored source and the environment it ran
 * with; offered unless the project URL serves it already) and "Redeploy" (its source, the project's
 * variables now). Both need the stored source, which destroying a deployment removes. On success the
 * new deployment's page opens (its live status and logs); a refusal shows the server's message.
 */
export function ReleaseActions({
  deployment,
  redeployLabel = 'Redeploy',
}: {
  deployment: { id: string; status: string; current: boolean };
  redeployLabel?: string;
}) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const onSuccess = async (created: { id: string }) => {
    await Promise.all([
      queryClient.invalidateQueries({ queryKey: trpc.deployments.pathKey() }),
      queryClient.invalidateQueries({ queryKey: trpc.projects.pathKey() }),
    ]);
    navigate(`/deployments/${created.id}`);
  };
  const rollback = useMutation(trpc.deployments.rollback.mutationOptions({ onSuccess }));
  const redeploy = useMutation(trpc.deployments.redeploy.mutationOptions({ onSuccess }));
  if (deployment.status === 'DESTROYED') return null;
  const busy = rollback.isPending || redeploy.isPending;
  const { id } = deployment;
  return (
    <>
      {!deployment.current && (
        <button type="button" disabled={busy} onClick={() => rollback.mutate({ id })}>
          {rollback.isPending ? 'Rolling back…' : 'Roll back to this'}
        </button>
      )}
      <button type="button" disabled={busy} onClick={() => redeploy.mutate({ id })}>
        {redeploy.isPending ? 'Redeploying…' : redeployLabel}
      </button>
      <ErrorMessage error={rollback.error ?? redeploy.error} />
    </>
  );
}
