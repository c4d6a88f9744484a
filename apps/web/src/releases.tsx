import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useTRPC } from './api';
import { navigate } from './router';
import { ConfirmButton, ErrorMessage } from './ui';

/**
 * "Roll back to this" (a new deployment of this one's stored source and the environment it ran
 * with; offered unless the project URL serves it already) and "Redeploy" (its source, the project's
 * variables now). Both need the stored source, which destroying a deployment removes. A rollback asks
 * first, and says that the project's database keeps today's data. On success the
 * new deployment's page opens (its live status and logs); a refusal shows the server's message.
 */
export function ReleaseActions({
  deployment,
  redeployLabel = 'Redeploy',
}: {
  deployment: {
    id: string;
    status: string;
    current: boolean;
    hasDatabase?: boolean;
    publicUrl?: string | null;
  };
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
      {/* A FAILED deployment that never ran (no URL was ever given) is nothing to go back to. */}
      {!deployment.current && !(deployment.status === 'FAILED' && deployment.publicUrl === null) && (
        <ConfirmButton
          label="Roll back to this"
          confirmLabel="Roll back"
          question={
            deployment.hasDatabase
              ? "Roll back to this deployment's code? The project's database is not rolled back: it keeps today's data."
              : "Roll back to this deployment's code and the variables it ran with?"
          }
          pending={busy}
          onConfirm={() => rollback.mutate({ id })}
        />
      )}
      <button type="button" disabled={busy} onClick={() => redeploy.mutate({ id })}>
        {redeploy.isPending ? 'Redeploying…' : redeployLabel}
      </button>
      <ErrorMessage error={rollback.error ?? redeploy.error} />
    </>
  );
}
