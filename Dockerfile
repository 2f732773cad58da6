# Shoal storage node image. Two stages on the same base: the first installs and builds, the second
# carries only what runs. better-sqlite3 13 ships prebuilt Node-API binaries in its npm package
# (no compiler, no download at install), and needs Node 22 or newer; the image runs Node 24 LTS.
#   docker build -t shoal .
#   docker run -v shoal-data:/data -p 7000:7000 -e SHOAL_CLUSTER_SECRET=... shoal
# The base is an argument so the image also builds where no registry is reachable, from a
# locally made Node image (scripts/podman-base-image.sh, used by scripts/container-smoke.sh).
ARG BASE=node:24-bookworm-slim

FROM ${BASE} AS build
WORKDIR /src
# tini is taken from Debian here and copied, as its static build, into the runtime stage, which then
# needs no apt.
RUN set -eux; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tini; \
    rm -rf /var/lib/apt/lists/*; \
    test -x /usr/bin/tini-static
COPY package.json package-lock.json ./
# The npm cache survives between builds of this stage on the same builder.
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY shared ./shared
COPY services ./services
# Build, drop dev dependencies, then the SQLite and addon sources and the other systems' prebuilt
# binaries of better-sqlite3 (only the Linux .node files are loaded at run time).
RUN set -eux; \
    npm run build; \
    npm prune --omit=dev --no-audit --no-fund; \
    rm -rf node_modules/better-sqlite3/deps node_modules/better-sqlite3/src \
      node_modules/better-sqlite3/prebuilds/darwin-* node_modules/better-sqlite3/prebuilds/win32-*

FROM ${BASE}
ENV NODE_ENV=production \
    SHOAL_DATA_DIR=/data \
    SHOAL_PORT=7000 \
    SHOAL_HOST=0.0.0.0
# A fixed numeric uid, so Kubernetes can check runAsNonRoot and fsGroup can match it.
RUN set -eux; \
    groupadd --gid 10001 shoal; \
    useradd --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin shoal; \
    mkdir -p /data; \
    chown 10001:10001 /data
COPY --from=build /usr/bin/tini-static /usr/bin/tini
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
USER 10001:10001
VOLUME /data
EXPOSE 7000
# Slim images have no curl: ask Node itself. /healthz answers 200 while the process is alive.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.SHOAL_PORT || 7000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# tini is PID 1: it forwards SIGTERM to the node (which then finishes in-flight requests, closes
# SQLite and exits 0) and reaps any orphaned child. Flags appended to `docker run` go to the node.
ENTRYPOINT ["/usr/bin/tini", "--", "node", "dist/services/storage-node/src/cli.js", "node"]
CMD []
