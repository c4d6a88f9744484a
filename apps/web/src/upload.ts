import { createClient, type RouterOutputs } from '@coderunner/api/client';

/**
 * fetch on XMLHttpRequest, for the one call that needs upload progress (fetch reports none): the
 * typed client is used as everywhere else, only its transport differs.
 */
function fetchWithUploadProgress(onProgress: (sent: number, total: number) => void): typeof fetch {
  return (input, init) =>
    new Promise<Response>((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(init?.method ?? 'GET', String(input));
      for (const [k, v] of new Headers(init?.headers).entries()) xhr.setRequestHeader(k, v);
      xhr.responseType = 'blob';
      xhr.upload.onprogress = (e) => onProgress(e.loaded, e.total);
      xhr.onload = () => {
        const headers = new Headers();
        for (const line of xhr.getAllResponseHeaders().trim().split(/\r?\n/)) {
          const i = line.indexOf(':');
          if (i > 0) headers.append(line.slice(0, i).trim(), line.slice(i + 1).trim());
        }
        resolve(
          new Response(xhr.response as Blob, { status: xhr.status, statusText: xhr.statusText, headers }),
        );
      };
      xhr.onerror = () => reject(new TypeError('network error: the upload did not reach the server'));
      xhr.onabort = () => reject(new DOMException('the upload was cancelled', 'AbortError'));
      init?.signal?.addEventListener('abort', () => xhr.abort());
      xhr.send((init?.body ?? null) as XMLHttpRequestBodyInit | null);
    });
}

export interface DeployOptions {
  projectId: string;
  archive: Blob;
  runtime?: string;
  database?: boolean;
  onProgress: (sent: number, total: number) => void;
}

export function uploadDeployment(opts: DeployOptions): Promise<RouterOutputs['deployments']['create']> {
  const client = createClient({
    url: `${window.location.origin}/trpc`,
    session: 'cookie',
    fetch: fetchWithUploadProgress(opts.onProgress),
  });
  const form = new FormData();
  form.set('projectId', opts.projectId);
  if (opts.runtime) form.set('runtime', opts.runtime);
  if (opts.database) form.set('database', 'postgres');
  form.set('source', opts.archive, 'source.tar.gz');
  return client.deployments.create.mutate(form);
}
