# The control plane, run with tsx from source (no bundling: Sequelize's dynamic requires and argon2's
# native addon make bundles fragile).
FROM node:20-bookworm-slim
WORKDIR /app
RUN npm install -g pnpm@12.4.2
COPY . .
RUN CI=true pnpm install --frozen-lockfile
# The dashboard served at / (pnpm start builds it when missing; the CMD below starts node directly).
RUN pnpm --filter @coderunner/web build
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080
EXPOSE 8080
# node directly (not `pnpm start`), so SIGTERM reaches the server and it drains before exiting.
CMD ["node", "--import", "tsx", "apps/server/src/main.ts"]
