import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

/**
 * Chunks by role, so the bundle check can weigh the API client on its own and the browser caches the
 * libraries across dashboard releases.
 */
export const CHUNKS = [
  { name: 'react', test: /node_modules[\\/](react|react-dom|scheduler)[\\/]/ },
  { name: 'query', test: /node_modules[\\/]@tanstack[\\/]/ },
  // The typed client: tRPC's client and its React binding, superjson, the SSE client, @coderunner/api/client.
  {
    name: 'client',
    test: /node_modules[\\/](@trpc|superjson|copy-anything|is-what|eventsource|eventsource-parser)[\\/]|packages[\\/]api[\\/]src[\\/]/,
  },
];

// `pnpm dev` here serves the dashboard with hot reload; API calls go to a server on :8080.
export default defineConfig({
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    reportCompressedSize: false,
    rolldownOptions: { output: { codeSplitting: { groups: CHUNKS } } },
  },
  server: { proxy: { '/trpc': 'http://localhost:8080' } },
});
