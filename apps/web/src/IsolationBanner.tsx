import { useQuery } from '@tanstack/react-query';
import { useTRPC } from './api';

/** Shown on every page, signed in or not, while this server runs deployed apps unisolated. */
export function IsolationBanner() {
  const trpc = useTRPC();
  const info = useQuery(trpc.system.info.queryOptions(undefined, { staleTime: 60_000 }));
  if (info.data?.isolation !== 'none') return null;
  return (
    <div className="banner-unisolated" role="alert">
      <strong>Apps on this server are not isolated from each other.</strong> Any deployed app can read the
      environment variables, files and databases of every other app here: deploy nothing you would not share
      with every account.{' '}
      {info.data.signup === 'open'
        ? 'Sign-up is open to anyone: the operator accepted this risk.'
        : 'Sign-up is closed after the first account until the operator turns isolation on.'}
    </div>
  );
}
