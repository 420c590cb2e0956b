#!/bin/bash
# Registry pull speed: `pull` of a ~150 MB (gzip), 3-layer image from a local registry (Debian's
# docker-registry on 127.0.0.1, plain HTTP), burrow beside Podman (when installed), in the same run,
# each from an empty store (`rmi -a -f`, then sync, before each timed pull). Also the peak RSS of one pull.
# A measurement, not a test.
#
# Usage: sudo bench/pull.sh      PULL_RUNS=5 BENCH_USER=burrowtest
#                                BURROW=PATH: a release binary to use instead of building target/release
#                                BENCH_DIR=/dev/shm: put the stores (and the registry's) on tmpfs, to
#                                measure the engines rather than a busy disk (default /tmp)
# The image is bench/lib/big-image.sh's (shared with bench/load.sh), pushed with skopeo.
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/lib/common.sh
source "$ROOT/hack/lib/common.sh"
# shellcheck source=bench/lib/big-image.sh
source "$ROOT/bench/lib/big-image.sh"

PULL_RUNS=${PULL_RUNS:-5}
BENCH_USER=${BENCH_USER:-$BURROW_TEST_USER}
BENCH_PACKAGES=(uidmap hyperfine jq python3 skopeo docker-registry time)
CACHE=/var/tmp/burrow-bench
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR
WORK=""
REGISTRY_PID=""

cleanup() {
  local f pid
  [[ -z $REGISTRY_PID ]] || { kill "$REGISTRY_PID" 2>/dev/null || true; wait "$REGISTRY_PID" 2>/dev/null || true; }
  [[ -n $WORK ]] || return 0
  for f in "$WORK/run/burrow/pause.pid" "$WORK/run/libpod/tmp/pause.pid"; do
    pid=$(cat "$f" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] &&
      [[ $(awk '/^Uid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) == "$(id -u "$BENCH_USER")" ]]; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

# Starts a registry on a free loopback port with its storage in $WORK; sets REGISTRY.
start_registry() {
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  mkdir -p "$WORK/registry"
  cat >"$WORK/registry/config.yml" <<CONF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry/data
http:
  addr: 127.0.0.1:$port
CONF
  docker-registry serve "$WORK/registry/config.yml" >"$WORK/registry/log" 2>&1 &
  REGISTRY_PID=$!
  REGISTRY=127.0.0.1:$port
  local i
  for i in $(seq 100); do
    curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "the registry did not start: $(cat "$WORK/registry/log")"
}

# Runs as BENCH_USER. Gets BURROW, PODMAN, IMAGE, WORK, PULL_RUNS.
# shellcheck disable=SC2016 # expanded by the inner shell
INNER='
set -euo pipefail
source "$BENCH_LIB"
private_dirs "$WORK"
cd "$HOME"
engines=(burrow)
if [[ -n $PODMAN ]]; then
  engines+=(podman)
  podman_config
fi
bin() { if [[ $1 == burrow ]]; then echo "$BURROW"; else echo "$PODMAN"; fi; }
for e in "${engines[@]}"; do
  b=$(bin "$e")
  log "$e: pull (x$PULL_RUNS, rmi -a -f before each)"
  $b rmi -a -f >/dev/null 2>&1 || true
  if ! out=$(/usr/bin/time -f "%M" -o "$WORK/rss-$e" $b pull -q --tls-verify=false "$IMAGE" 2>&1); then
    printf "pull-%s\tFAILED: %s\n" "$e" "$(tail -n 1 <<<"$out")"; continue
  fi
  # sync: writeback of the previous run and of rmi must not land in the next timed run.
  hyperfine -N --style none --runs "$PULL_RUNS" --prepare "sh -c \"$b rmi -a -f >/dev/null 2>&1; sync\"" \
    --export-json "$WORK/pull-$e.json" "$b pull -q --tls-verify=false $IMAGE" >/dev/null
  printf "pull-%s\t%s\t%s\n" "$e" "$(stats "$WORK/pull-$e.json")" "$(tail -n 1 "$WORK/rss-$e")"
  $b rmi -a -f >/dev/null
done
'

main() {
  require_root
  ensure_packages "${BENCH_PACKAGES[@]}"
  ensure_cargo
  ensure_user "$BENCH_USER" range
  ensure_devices
  # The package's own service may hold :5000; ours uses a free port, so it is left alone.
  local burrow=${BURROW:-$ROOT/target/release/burrow}
  if [[ -z ${BURROW:-} ]]; then
    log "building burrow (release)"
    (cd "$ROOT" && cargo build --release --locked --bin burrow)
  fi
  local archive=$CACHE/big.oci.tar
  make_archive "$archive"
  local mb
  mb=$(layers_mb "$archive")
  WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/bp.XXXX")
  install -m 0755 "$burrow" "$WORK/burrow"
  start_registry
  log "pushing the image to $REGISTRY"
  skopeo --insecure-policy copy -q --dest-tls-verify=false "oci-archive:$archive" "docker://$REGISTRY/big:latest"
  chown "$BENCH_USER" "$WORK"
  chmod 0700 "$WORK"
  local podman=""
  if command -v podman >/dev/null 2>&1; then
    ensure_packages runc
    podman=$(command -v podman)
  fi
  log "benchmarking as $BENCH_USER in $WORK"
  run_as_user "$BENCH_USER" BENCH_LIB="$ROOT/bench/lib/inner.sh" BURROW="$WORK/burrow" PODMAN="$podman" IMAGE="$REGISTRY/big:latest" WORK="$WORK" \
    PULL_RUNS="$PULL_RUNS" bash -c "$INNER" >"$WORK/results.tsv"
  awk -F'\t' -v mb="$mb" -v runs="$PULL_RUNS" -v nproc="$(nproc)" -v where="$(df --output=fstype "$WORK" | tail -n 1)" '
    { med[$1] = $2; p90[$1] = $3; rss[$1] = $4 }
    function ok(k) { return (k in med) && med[k] !~ /^FAILED/ && med[k] > 0 }
    function row(e) {
      if (!(("pull-" e) in med)) return
      if (!ok("pull-" e)) { printf "| %-44s | %s |\n", e " pull -q --tls-verify=false", med["pull-" e]; return }
      printf "| %-44s | %9.0f | %8.0f | %7.1f | %12.1f |\n", e " pull -q --tls-verify=false", med["pull-" e], p90["pull-" e], \
        mb / (med["pull-" e] / 1000), rss["pull-" e] / 1024
    }
    END {
      printf "pull of a 3-layer image from a local registry, %.1f MB of gzip layers (%d runs; rmi -a -f and sync before each; %d cores; stores on %s)\n", mb, runs, nproc, where
      printf "| %-44s | %9s | %8s | %7s | %12s |\n", "command", "median ms", "p90 ms", "MB/s", "peak RSS MiB"
      print "|----------------------------------------------|-----------|----------|---------|--------------|"
      row("burrow"); row("podman")
      if (ok("pull-burrow") && ok("pull-podman")) printf "throughput burrow/podman: %.2fx (median)\n", med["pull-podman"] / med["pull-burrow"]
    }' "$WORK/results.tsv"
}

main "$@"
