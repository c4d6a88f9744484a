import { isCodeRunnerError } from '@coderunner/api/client';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useTRPC } from './api';
import { IsolationBanner } from './IsolationBanner';
import { AccountPage } from './pages/AccountPage';
import { AuthPage } from './pages/AuthPage';
import { DeploymentPage } from './pages/DeploymentPage';
import { ProjectPage } from './pages/ProjectPage';
import { ProjectsPage } from './pages/ProjectsPage';
import { navigate, useRoute } from './router';
import { ErrorMessage, Link, Loading } from './ui';

export function App() {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const me = useQuery(trpc.auth.me.queryOptions());
  const logout = useMutation(
    trpc.auth.logout.mutationOptions({
      onSuccess: () => {
        queryClient.clear();
        navigate('/');
      },
    }),
  );
  const signedOut = isCodeRunnerError(me.error) && me.error.data.code === 'UNAUTHORIZED';

  return (
    <>
      <header className="top">
        <Link href="/" className="brand">
          CodeRunner
        </Link>
        {me.data && (
          <nav aria-label="Main">
            <Link href="/">Projects</Link>
            <Link href="/account">Account</Link>
            <span className="muted who">{me.data.email}</span>
            <button type="button" onClick={() => logout.mutate()} disabled={logout.isPending}>
              Sign out
            </button>
          </nav>
        )}
      </header>
      <IsolationBanner />
      <main>
        <ErrorMessage error={logout.error} />
        {me.isPending ? (
          <Loading what="your session" />
        ) : signedOut ? (
          <AuthPage />
        ) : me.error ? (
          <ErrorMessage error={me.error} />
        ) : (
          <Page />
        )}
      </main>
    </>
  );
}

function Page() {
  const route = useRoute();
  switch (route.page) {
    case 'projects':
      return <ProjectsPage />;
    case 'project':
      return <ProjectPage id={route.id} />;
    case 'deployment':
      return <DeploymentPage id={route.id} />;
    case 'account':
      return <AccountPage />;
    default:
      return (
        <section>
          <h1>Not found</h1>
          <p>
            There is no such page. <Link href="/">Back to your projects</Link>
          </p>
        </section>
      );
  }
}
