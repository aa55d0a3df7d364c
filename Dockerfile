# syntax=docker/dockerfile:1
# One image recipe for the six services; the build argument SERVICE names which one.
# Build from the repository root:
#   docker build --build-arg SERVICE=relay -t atmos/relay .
# (SERVICE is one of labeler, relay, scheduler, fbl-ingest, admin, webhooks; the image is named
# atmos/<SERVICE> in docker-compose.yml and infra/k8s.)
# Node runs the TypeScript sources directly (type stripping), so there is no compile
# stage: the build stage installs exactly the production dependencies of @atmos/<SERVICE>
# from the lockfile, and the runtime stage copies them with the sources it needs.
ARG NODE_IMAGE=node:22.23.3-bookworm-slim

FROM ${NODE_IMAGE} AS build
ARG SERVICE
# An unknown or missing name fails here, before anything is installed.
RUN case "${SERVICE}" in labeler|relay|scheduler|fbl-ingest|admin|webhooks) ;; \
      *) echo "build with --build-arg SERVICE=<labeler|relay|scheduler|fbl-ingest|admin|webhooks>, not '${SERVICE}'" >&2; exit 1 ;; esac
WORKDIR /app
RUN npm install --global --no-audit --no-fund pnpm@10.34.9
COPY pnpm-lock.yaml pnpm-workspace.yaml package.json ./
# The patches pnpm applies to dependencies (pnpm-workspace.yaml names them).
COPY patches ./patches
RUN pnpm fetch --prod
COPY packages ./packages
COPY services/${SERVICE} ./services/${SERVICE}
RUN pnpm install --frozen-lockfile --offline --prod --filter "@atmos/${SERVICE}..."

FROM ${NODE_IMAGE} AS runtime
ARG SERVICE
# Each service defaults its own ops port (ATMOS_HTTP_PORT: labeler 8101, relay 8102,
# scheduler 8103, fbl-ingest 8104, admin 8105, webhooks 8106); the health check reads the same default.
ENV NODE_ENV=production \
    ATMOS_HTTP_HOST=0.0.0.0 \
    ATMOS_SERVICE=${SERVICE}
WORKDIR /app
COPY --from=build --chown=node:node /app/package.json ./
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/packages ./packages
COPY --from=build --chown=node:node /app/services/${SERVICE} ./services/${SERVICE}
# Where compose keeps keys and secrets: a named volume first mounted here takes this
# ownership, so the services (user node) and relay-cert (uid 1000) can write into it.
RUN mkdir -p /var/lib/atmos /var/lib/atmos-pool && chown node:node /var/lib/atmos /var/lib/atmos-pool
USER node
WORKDIR /app/services/${SERVICE}
# No EXPOSE: it would have to list every service's ports in each image. docker-compose.yml
# and the manifests name the ports each service listens on.
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD ["node", "-e", "const port = process.env.ATMOS_HTTP_PORT || { labeler: 8101, relay: 8102, scheduler: 8103, 'fbl-ingest': 8104, admin: 8105, webhooks: 8106 }[process.env.ATMOS_SERVICE]; fetch(`http://127.0.0.1:${port}/healthz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
STOPSIGNAL SIGTERM
CMD ["node", "src/index.ts"]
