import type { FakeAgentSphere } from './server';

/**
 * Replaces `globalThis.fetch` so that the SDK's `https://api.<domain>`, `https://49983-<id>.<domain>`
 * (envd) and `https://<port>-<id>.<domain>` (apps) reach the fake and 127.0.0.1. Both the SDK's REST
 * client (openapi-fetch, which passes a Request) and its Connect transport (url + init) use global fetch.
 * Install before the first SDK call: openapi-fetch keeps the fetch it finds when a client is made.
 * Returns a function that restores the original.
 */
export function installFetchRouter(fake: FakeAgentSphere): () => void {
  const original = globalThis.fetch;
  globalThis.fetch = async (input, init) => {
    const request = new Request(input, init);
    const target = fake.route(new URL(request.url));
    if (!target) return original(request);
    const headers = new Headers(request.headers);
    for (const [name, value] of Object.entries(target.headers)) headers.set(name, value);
    return original(target.url, {
      method: request.method,
      headers,
      body: request.body,
      signal: request.signal,
      redirect: 'manual',
      duplex: 'half', // required by Node's fetch for a streamed body
    } as RequestInit);
  };
  return () => {
    globalThis.fetch = original;
  };
}
