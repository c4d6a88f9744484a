import { useSyncExternalStore } from 'react';

/** The dashboard's pages are plain paths (/projects/<id>, …); the server answers each with index.html. */
export type Route =
  | { page: 'projects' }
  | { page: 'project'; id: string }
  | { page: 'deployment'; id: string }
  | { page: 'account' }
  | { page: 'not-found' };

export function parseRoute(path: string): Route {
  if (path === '/' || path === '') return { page: 'projects' };
  if (path === '/account') return { page: 'account' };
  const m = /^\/(projects|deployments)\/([0-9a-f-]{36})$/i.exec(path);
  if (m?.[1] === 'projects') return { page: 'project', id: m[2]! };
  if (m?.[1] === 'deployments') return { page: 'deployment', id: m[2]! };
  return { page: 'not-found' };
}

const listeners = new Set<() => void>();
window.addEventListener('popstate', () => {
  for (const l of listeners) l();
});

export function navigate(path: string): void {
  window.history.pushState(null, '', path);
  for (const l of listeners) l();
  window.scrollTo(0, 0);
}

export function useRoute(): Route {
  const path = useSyncExternalStore(
    (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    () => window.location.pathname,
  );
  return parseRoute(path);
}
