#!/usr/bin/env bash
# Builds a Node.js base image for the Dockerfile's `ARG BASE` without any container registry:
# a minimal Debian bookworm root file system made by debootstrap from the Debian mirror apt uses
# here, plus this machine's own node, npm and Node headers (for node-gyp), plus this machine's CA
# bundle (so npm inside the build trusts the same registry certificates the host trusts).
# It stands in for node:<lts>-bookworm-slim where Docker Hub cannot be reached.
#
#   scripts/podman-base-image.sh [IMAGE]     default IMAGE: localhost/shoal-node-base:node-vX.Y.Z
#
# The default tag names this machine's node version, so a node upgrade makes a new base instead of
# reusing one that carries the old node.
# Needs root, podman, runc and debootstrap (installed from Debian's packages when missing).
# The Debian root file system is kept as $SHOAL_BASE_DEBIAN_IMAGE (localhost/debian:bookworm-min).
# Prints the image name on the last line. Work files go to $SHOAL_BASE_WORKDIR (default
# /tmp/shoal-podman-base). Rebuilds nothing that already exists; `podman rmi IMAGE` forces it.
set -euo pipefail

IMAGE=${1:-localhost/shoal-node-base:node-$(node --version)}
DEBIAN_IMAGE=${SHOAL_BASE_DEBIAN_IMAGE:-localhost/debian:bookworm-min}
WORK=${SHOAL_BASE_WORKDIR:-/tmp/shoal-podman-base}
# crun fails on hosts with hybrid cgroups; runc works. Explicit ulimits: podman's defaults need
# CAP_SYS_RESOURCE, which containers in a sandbox often lack.
PODMAN=(podman --runtime "${SHOAL_PODMAN_RUNTIME:-runc}")
LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

log() { echo "[base] $*" >&2; }

if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing podman, runc and debootstrap from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
  else
    log "needs podman, runc and debootstrap (apt-get install podman runc debootstrap, as root)"
    exit 1
  fi
fi

if "${PODMAN[@]}" image exists "$IMAGE"; then
  log "$IMAGE exists"
  echo "$IMAGE"
  exit 0
fi
mkdir -p "$WORK"

if ! "${PODMAN[@]}" image exists "$DEBIAN_IMAGE"; then
  mirror=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2; exit}' || true)
  [ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
  log "debootstrap bookworm (minbase) from $mirror"
  rm -rf "$WORK/rootfs"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
  rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
  tar -C "$WORK/rootfs" -c . | "${PODMAN[@]}" import - "$DEBIAN_IMAGE" >"$WORK/import.log" 2>&1 ||
    { tail -20 "$WORK/import.log" >&2; exit 1; }
  rm -rf "$WORK/rootfs"
fi

node_bin=$(readlink -f "$(command -v node)")
npm_dir=$(readlink -f "$(dirname "$(readlink -f "$(command -v npm)")")/..")
node_prefix=$(dirname "$(dirname "$node_bin")")
ctx="$WORK/ctx"
rm -rf "$ctx"
mkdir -p "$ctx/include"
cp "$node_bin" "$ctx/node"
cp -r "$npm_dir" "$ctx/npm"
# Official Node images keep the headers in /usr/local/include/node; so does this one.
if [ -f "$node_prefix/include/node/node_api.h" ]; then
  cp -r "$node_prefix/include/node" "$ctx/include/node"
else
  log "no Node headers under $node_prefix/include/node: node-gyp will try to download them"
fi
cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
cat >"$ctx/Dockerfile" <<EOF
FROM $DEBIAN_IMAGE
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
COPY include /usr/local/include
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm && \
    ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx && node -v && npm -v
CMD ["node"]
EOF
log "building $IMAGE with node $("$node_bin" --version)"
"${PODMAN[@]}" build --network none "${LIMITS[@]}" -t "$IMAGE" "$ctx" >"$WORK/build.log" 2>&1 ||
  { tail -20 "$WORK/build.log" >&2; exit 1; }
rm -rf "$ctx"
echo "$IMAGE"
