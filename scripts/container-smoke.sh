#!/usr/bin/env bash
# Smoke test of the container image, with podman (no Docker engine needed):
#   1. builds the image from ./Dockerfile (base: $SHOAL_SMOKE_BASE, else one made locally by
#      scripts/podman-base-image.sh, because no container registry may be reachable);
#   2. starts three containers with --network host on 127.0.0.1 ports P..P+2, joined by
#      SHOAL_SEEDS, with a cluster secret and an API key, as a deployment would configure them;
#   3. uploads a file to the first and downloads it from the third (sha256 compared), checks the
#      user (non-root), PID 1 (tini) and the image's HEALTHCHECK;
#   4. stops each with SIGTERM (`podman stop -t 30`) and requires exit code 0 and a clean stop.
# The last line is always `[smoke] PASS ...` or `[smoke] FAIL ...` (or `[smoke] SKIP ...`) with the
# time each phase took. Containers and volumes are removed on every exit, failure or interrupt.
# `.ci/run` runs it after `npm test` with SHOAL_SMOKE_REQUIRED=1. Images stay cached in podman's
# store: a rerun rebuilds only the layers whose inputs changed (see the Dockerfile's order).
#
#   scripts/container-smoke.sh
#
# Environment:
#   SHOAL_SMOKE_BASE=IMAGE   base image for the Dockerfile's BASE (e.g. node:24-bookworm-slim)
#   SHOAL_SMOKE_PORT=7401    first of the three ports
#   SHOAL_SMOKE_REQUIRED=1   missing prerequisites fail the script instead of skipping it
#   SHOAL_SMOKE_INSTALL=1    install podman from Debian's packages when missing (also when CI=true)
#   SHOAL_SMOKE_KEEP=1       leave containers and volumes behind for inspection
#   SHOAL_PODMAN_RUNTIME     OCI runtime for podman (default runc; crun fails on hybrid cgroups)
set -euo pipefail
cd "$(dirname "$0")/.."

PORT0=${SHOAL_SMOKE_PORT:-7401}
IMAGE=localhost/shoal:smoke
RUN_ID=shoal-smoke-$$
PODMAN=(podman --runtime "${SHOAL_PODMAN_RUNTIME:-runc}")
LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
API_KEY=smoke-api-key-$RANDOM$RANDOM
SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shoal-smoke.XXXXXX")
CONTAINERS=()
STARTED_AT=$(date +%s)
PHASE=prerequisites
TIMES=()
RESULT=

say() { echo "[smoke] $*"; }
quiet_systemd() { grep -v 'systemd connection' >&2 || true; }
now() { date +%s; }
# phase NAME: closes the running phase (its seconds go into the final line) and starts NAME.
PHASE_AT=$STARTED_AT
phase() {
  TIMES+=("$PHASE $(($(now) - PHASE_AT))s")
  PHASE=$1
  PHASE_AT=$(now)
}
summary() {
  local IFS=,
  echo "${TIMES[*]}" | sed 's/,/, /g'
}
skip() {
  if [ "${SHOAL_SMOKE_REQUIRED:-}" = 1 ]; then
    fail "$* (SHOAL_SMOKE_REQUIRED=1: not skipped)"
  fi
  RESULT="SKIP: $*"
  exit 0
}
fail() {
  RESULT="FAIL in $PHASE: $*"
  exit 1
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ $rc -ne 0 ]; then
    for c in "${CONTAINERS[@]}"; do
      echo "----- last log lines of $c -----" >&2
      "${PODMAN[@]}" logs --tail 30 "$c" >&2 2>&1
    done
  fi
  if [ "${SHOAL_SMOKE_KEEP:-}" != 1 ]; then
    for c in "${CONTAINERS[@]}"; do
      "${PODMAN[@]}" rm -f -t 0 "$c" >/dev/null 2>&1
      "${PODMAN[@]}" volume rm -f "$c-data" >/dev/null 2>&1
    done
    rm -rf "$WORK"
  else
    say "kept: containers ${CONTAINERS[*]}, their volumes, $WORK"
  fi
  # One closing line, last, whatever happened: PASS, SKIP or FAIL, with the phases' times.
  [ -n "$RESULT" ] || RESULT="FAIL in $PHASE: exit code $rc"
  [ $rc -eq 0 ] || case "$RESULT" in FAIL*) ;; *) RESULT="FAIL in $PHASE: exit code $rc" ;; esac
  TIMES+=("$PHASE $(($(now) - PHASE_AT))s")
  local line="[smoke] $RESULT ($(summary); total $(($(now) - STARTED_AT))s)"
  if [ $rc -eq 0 ]; then echo "$line"; else echo "$line" >&2; fi
  exit $rc
}
trap cleanup EXIT
trap 'RESULT="FAIL in $PHASE: interrupted"; exit 130' INT
trap 'RESULT="FAIL in $PHASE: terminated"; exit 143' TERM

# ---- prerequisites -------------------------------------------------------------------------------
if ! command -v podman >/dev/null || ! command -v "${SHOAL_PODMAN_RUNTIME:-runc}" >/dev/null; then
  if [ "${SHOAL_SMOKE_INSTALL:-}" = 1 ] || [ "${CI:-}" = true ]; then
    [ "$(id -u)" = 0 ] || skip "podman is missing and installing it needs root"
    say "installing podman and runc from Debian's packages"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >/dev/null; } ||
      skip "podman could not be installed"
  else
    skip "podman (and runc) not found: apt-get install podman runc, or SHOAL_SMOKE_INSTALL=1"
  fi
fi
command -v curl >/dev/null || skip "curl not found"
command -v node >/dev/null || skip "node not found (it reads the JSON answers)"
for i in 0 1 2; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$((PORT0 + i))") 2>/dev/null; then
    fail "port $((PORT0 + i)) on 127.0.0.1 is taken (set SHOAL_SMOKE_PORT)"
  fi
done

# ---- base and image ------------------------------------------------------------------------------
phase base
t=$(now)
if [ -n "${SHOAL_SMOKE_BASE:-}" ]; then
  BASE=$SHOAL_SMOKE_BASE
else
  BASE=$(scripts/podman-base-image.sh | tail -1) || skip "no base image (scripts/podman-base-image.sh failed)"
fi
BASE_SECONDS=$(($(now) - t))
say "base image $BASE (${BASE_SECONDS}s)"

phase build
t=$(now)
say "building $IMAGE (log: $WORK/build.log)"
# --format docker keeps the HEALTHCHECK (the OCI image format has no field for it); --network host
# lets the build reach Debian's mirror and the npm registry.
"${PODMAN[@]}" build --format docker --network host "${LIMITS[@]}" --build-arg "BASE=$BASE" \
  -t "$IMAGE" . >"$WORK/build.log" 2>&1 || {
  tail -40 "$WORK/build.log" >&2
  fail "image build failed"
}
BUILD_SECONDS=$(($(now) - t))
say "built $IMAGE in ${BUILD_SECONDS}s ($("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1 / 1e6}'))"

# ---- three nodes ---------------------------------------------------------------------------------
url() { echo "http://127.0.0.1:$((PORT0 + $1))"; }
phase start
t=$(now)
for i in 0 1 2; do
  name=$RUN_ID-$i
  seeds=$(for j in 0 1 2; do [ "$j" = "$i" ] || printf '%s,' "$(url "$j")"; done)
  CONTAINERS+=("$name")
  # --read-only as in the StatefulSet (readOnlyRootFilesystem); podman mounts a tmpfs on /tmp.
  # Without systemd, podman complains on stderr that it cannot set up a HEALTHCHECK timer; the
  # check is run by hand below, so those lines are dropped (other errors still show).
  "${PODMAN[@]}" run -d --name "$name" --network host "${LIMITS[@]}" --read-only \
    -v "$name-data:/data" \
    -e SHOAL_HOST=127.0.0.1 \
    -e SHOAL_PORT=$((PORT0 + i)) \
    -e SHOAL_NODE_ID="smoke-$i" \
    -e SHOAL_ADVERTISE_URL="$(url "$i")" \
    -e SHOAL_SEEDS="${seeds%,}" \
    -e SHOAL_CLUSTER_SECRET="$SECRET" \
    -e SHOAL_API_KEYS="$API_KEY" \
    -e SHOAL_GOSSIP_INTERVAL_MS=250 \
    -e SHOAL_FAILURE_TIMEOUT_MS=5000 \
    "$IMAGE" >/dev/null 2> >(quiet_systemd)
done

wait_for() { # description, seconds, command...
  local what=$1 deadline=$(($(now) + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$(now)" -lt "$deadline" ] || fail "timed out waiting for $what"
    sleep 0.5
  done
}
for i in 0 1 2; do wait_for "node $i /readyz" 90 curl -sf "$(url "$i")/readyz"; done
alive_count() {
  curl -sf -H "Authorization: Bearer $API_KEY" "$(url "$1")/cluster" |
    node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>{const c=JSON.parse(s);process.stdout.write(String(c.nodes.filter((n)=>n.state==="alive").length))})'
}
three_alive() { for i in 0 1 2; do [ "$(alive_count "$i")" = 3 ] || return 1; done; }
wait_for "three alive members in every node's view" 60 three_alive
UP_SECONDS=$(($(now) - t))
say "3 nodes ready and converged in ${UP_SECONDS}s"

# ---- container properties ------------------------------------------------------------------------
phase checks
uid=$("${PODMAN[@]}" exec "$RUN_ID-0" id -u)
[ "$uid" != 0 ] || fail "the node runs as root"
pid1=$("${PODMAN[@]}" exec "$RUN_ID-0" cat /proc/1/cmdline | tr '\0' ' ')
case "$pid1" in */tini*) ;; *) fail "PID 1 is not tini: $pid1" ;; esac
"${PODMAN[@]}" healthcheck run "$RUN_ID-0" >/dev/null || fail "the image's HEALTHCHECK failed"
# A base made here carries the Node that ran the test suite (CI: Node 24 from the npm registry),
# so what CI tested is what the image ships.
image_node=$("${PODMAN[@]}" exec "$RUN_ID-0" node --version)
if [ -z "${SHOAL_SMOKE_BASE:-}" ] && [ "$image_node" != "$(node --version)" ]; then
  fail "the image runs node $image_node, but the base was made from $(node --version)"
fi
say "uid $uid, PID 1: $pid1, node $image_node, HEALTHCHECK healthy"

# ---- data path -----------------------------------------------------------------------------------
phase data
head -c $((3 * 1024 * 1024 + 17)) /dev/urandom >"$WORK/upload.bin"
want=$(sha256sum "$WORK/upload.bin" | cut -d' ' -f1)
code=$(curl -s -o /dev/null -w '%{http_code}' -F "file=@$WORK/upload.bin" "$(url 0)/files")
[ "$code" = 401 ] || fail "upload without the API key answered $code, expected 401"
curl -sSf -H "Authorization: Bearer $API_KEY" -F "file=@$WORK/upload.bin" "$(url 0)/files" >"$WORK/created.json" ||
  fail "upload to node 0 failed"
read -r id sha < <(node -e 'const c=require(process.argv[1]);console.log(c.id,c.sha256)' "$WORK/created.json")
[ "$sha" = "$want" ] || fail "node 0 reported sha256 $sha, expected $want"
curl -sSf -H "Authorization: Bearer $API_KEY" -o "$WORK/download.bin" "$(url 2)/files/$id" ||
  fail "download from node 2 failed"
got=$(sha256sum "$WORK/download.bin" | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "downloaded sha256 $got, expected $want"
say "uploaded $id to node 0, downloaded it from node 2: sha256 matches"

# ---- SIGTERM -------------------------------------------------------------------------------------
phase sigterm
for c in "${CONTAINERS[@]}"; do
  t=$(now)
  "${PODMAN[@]}" stop -t 30 "$c" >/dev/null 2> >(quiet_systemd)
  secs=$(($(now) - t))
  rc=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$c")
  [ "$rc" = 0 ] || fail "$c exited $rc after SIGTERM, expected 0"
  "${PODMAN[@]}" logs "$c" 2>&1 | grep -q '"msg":"stopped"' || fail "$c did not log a clean stop"
  say "$c: SIGTERM -> exit 0 in ${secs}s"
  if [ "$secs" -ge 10 ]; then # passed, but slow: show why, before podman's 30 s SIGKILL makes it a failure
    say "$c took ${secs}s to stop; its last log lines:"
    "${PODMAN[@]}" logs --tail 15 "$c" 2>&1 | sed 's/^/    /'
  fi
done

RESULT="PASS: image built, 3 nodes up, upload to node 0 read back from node 2, SIGTERM -> exit 0 x3"
