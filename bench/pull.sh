#!/bin/bash
# Registry pull speed: `pull` of a ~150 MB (gzip), 3-layer image from a local registry (Debian's
# docker-registry on 127.0.0.1, plain HTTP), burrow beside Podman (when installed), in the same run,
# alternating engines. Every timed pull starts from identical, fresh disk state: the engine's whole
# per-user state (HOME, XDG data/config/runtime dirs, hence burrow's store and Podman's graphroot and
# runroot) lives on a new ext4 filesystem (a preallocated loop file under /var/tmp, `mkfs.ext4 -q`,
# owned by the bench user), made for that pull alone. On a long-used disk, ext4's inode allocator
# state after many create/delete cycles of the same tree swung results by 10x: the disk's
# history, not the engines. Untimed before each pull: the store is initialised (`images`) and
# `sync` run. Also reported: the peak RSS (/usr/bin/time %M) of the pulls. A measurement, not a test.
#
# Usage: sudo bench/pull.sh      PULL_RUNS=5 BENCH_USER=burrowtest
#                                BURROW=PATH: a release binary to use instead of building target/release
#                                BENCH_DIR=/dev/shm: the stores (and the registry's) on tmpfs instead, a
#                                fresh directory per pull, to measure the engines without any disk
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
BENCH_PACKAGES=(uidmap jq python3 skopeo docker-registry time e2fsprogs)
CACHE=/var/tmp/burrow-bench
# Room for one engine's copy of the image (extracted ~230 MB, plus what the engine keeps beside).
FS_SIZE=2G
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR
WORK=""
REGISTRY_PID=""
LOOP_FILE=""
LOOP_DEV=""

# Kills the pause process an engine left for the store in $WORK/store (by its pid file, only if
# it is the bench user's), so the store can be unmounted or removed.
kill_pause() {
  local f pid
  for f in "$WORK/store/run/burrow/pause.pid" "$WORK/store/run/libpod/tmp/pause.pid"; do
    pid=$(cat "$f" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] &&
      [[ $(awk '/^Uid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) == "$(id -u "$BENCH_USER")" ]]; then
      kill -KILL "$pid" 2>/dev/null || true
      while [[ -e /proc/$pid ]] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do sleep 0.05; done
    fi
  done
}

drop_store() {
  [[ -n $WORK && -e $WORK/store ]] || return 0
  kill_pause
  if mountpoint -q "$WORK/store"; then umount "$WORK/store"; fi
  if [[ -n $LOOP_DEV ]]; then losetup -d "$LOOP_DEV" 2>/dev/null || true; LOOP_DEV=""; fi
  if [[ -n $LOOP_FILE ]]; then rm -f "$LOOP_FILE"; LOOP_FILE=""; fi
  rm -rf --one-file-system "$WORK/store"
}

# A fresh, empty store directory at $WORK/store owned by the bench user: a new ext4 unless on tmpfs.
fresh_store() {
  drop_store
  mkdir "$WORK/store"
  if [[ $FSTYPE != tmpfs ]]; then
    LOOP_FILE=$(mktemp /var/tmp/burrow-bench-fs.XXXX)
    # Preallocated, so the root disk's block allocation is not part of the pull; direct I/O, so
    # the store's writeback reaches the disk as a real disk's would, not the host's page cache.
    fallocate -l "$FS_SIZE" "$LOOP_FILE"
    LOOP_DEV=$(losetup --find --show --direct-io=on "$LOOP_FILE" 2>/dev/null || losetup --find --show "$LOOP_FILE")
    # No lazy init: ext4lazyinit would otherwise zero inode tables during the timed pull.
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$LOOP_DEV"
    mount "$LOOP_DEV" "$WORK/store"
  fi
  chown "$BENCH_USER": "$WORK/store"
  chmod 0700 "$WORK/store"
}

cleanup() {
  [[ -z $REGISTRY_PID ]] || { kill "$REGISTRY_PID" 2>/dev/null || true; wait "$REGISTRY_PID" 2>/dev/null || true; }
  [[ -n $WORK ]] || return 0
  drop_store
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

# Runs as BENCH_USER, in the fresh store. Gets B (the engine binary), ENGINE, STEP (init|pull),
# IMAGE, STORE. `pull` prints "MICROSECONDS PEAK_RSS_KIB USER_S SYS_S".
# shellcheck disable=SC2016 # expanded by the inner shell
INNER='
set -euo pipefail
source "$BENCH_LIB"
private_dirs "$STORE"
cd "$HOME"
[[ $ENGINE != podman ]] || podman_config
case $STEP in
init) $B images >/dev/null ;;
pull)
  start=$(date +%s%N)
  /usr/bin/time -f "%M %U %S" -o "$STORE/rss" $B pull -q --tls-verify=false "$IMAGE" >/dev/null
  end=$(date +%s%N)
  [[ -n $($B images -q) ]] || { echo "no image after the pull" >&2; exit 1; }
  echo "$(((end - start) / 1000)) $(tail -n 1 "$STORE/rss")"
  ;;
esac
'

# one_pull ENGINE BIN: one timed pull into a fresh store; appends "ENGINE MS RSS CPU_S" to results.
one_pull() {
  local engine=$1 bin=$2 out us rss user sys cpu
  fresh_store
  run_as_user "$BENCH_USER" BENCH_LIB="$ROOT/bench/lib/inner.sh" B="$bin" ENGINE="$engine" STEP=init \
    IMAGE="$IMAGE" STORE="$WORK/store" bash -c "$INNER" 2>>"$WORK/init.log"
  sync
  if ! out=$(run_as_user "$BENCH_USER" BENCH_LIB="$ROOT/bench/lib/inner.sh" B="$bin" ENGINE="$engine" \
    STEP=pull IMAGE="$IMAGE" STORE="$WORK/store" bash -c "$INNER" 2>&1); then
    die "$engine pull failed: $(tail -n 3 <<<"$out")"
  fi
  read -r us rss user sys <<<"$(tail -n 1 <<<"$out")"
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
  log "$engine: $((us / 1000)) ms, CPU ${cpu} s, peak RSS $((rss / 1024)) MiB"
  printf "%s %s %s %s\n" "$engine" "$((us / 1000))" "$rss" "$cpu" >>"$WORK/results"
  drop_store
}

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
  FSTYPE=ext4-fresh
  [[ $(df --output=fstype "$WORK" | tail -n 1) != tmpfs ]] || FSTYPE=tmpfs
  install -m 0755 "$burrow" "$WORK/burrow"
  start_registry
  IMAGE=$REGISTRY/big:latest
  log "pushing the image to $REGISTRY"
  skopeo --insecure-policy copy -q --dest-tls-verify=false "oci-archive:$archive" "docker://$IMAGE"
  chmod 0755 "$WORK"
  local podman=""
  if command -v podman >/dev/null 2>&1; then
    ensure_packages runc
    podman=$(command -v podman)
  fi
  log "benchmarking as $BENCH_USER, stores on $FSTYPE"
  : >"$WORK/results"
  local r
  for ((r = 1; r <= PULL_RUNS; r++)); do
    one_pull burrow "$WORK/burrow"
    [[ -z $podman ]] || one_pull podman "$podman"
  done
  awk -v load="$(cut -d' ' -f1-3 /proc/loadavg)" -v mb="$mb" -v runs="$PULL_RUNS" -v nproc="$(nproc)" -v where="$FSTYPE" '
    { t[$1, ++n[$1]] = $2; c[$1, n[$1]] = $4; if ($3 > rss[$1]) rss[$1] = $3 }
    function sort(e, cpu,   i, j, x) {
      for (i = 1; i <= n[e]; i++) s[i] = cpu ? c[e, i] : t[e, i]
      for (i = 2; i <= n[e]; i++) { x = s[i]; for (j = i - 1; j >= 1 && s[j] > x; j--) s[j + 1] = s[j]; s[j + 1] = x }
    }
    function median(e, cpu) { sort(e, cpu); return n[e] % 2 ? s[(n[e] + 1) / 2] : (s[n[e] / 2] + s[n[e] / 2 + 1]) / 2 }
    function all(e,   i, o) { sort(e, 0); o = s[1]; for (i = 2; i <= n[e]; i++) o = o " " s[i]; return o }
    function row(e) {
      if (!(e in n)) return
      med[e] = median(e, 0); cpu[e] = median(e, 1)
      printf "| %-33s | %9.0f | %7.1f | %9.2f | %13.1f | %-30s |\n", e " pull -q --tls-verify=false", med[e], mb / (med[e] / 1000), cpu[e], rss[e] / 1024, all(e)
    }
    END {
      printf "pull of a 3-layer image from a local registry, %.1f MB of gzip layers (%d runs each, alternating; a fresh store on %s for each; %d cores)\n", mb, runs, where, nproc
      printf "| %-33s | %9s | %7s | %9s | %13s | %-30s |\n", "command", "median ms", "MB/s", "CPU s", "max peak RSS", "all runs, ms (sorted)"
      print "|-----------------------------------|-----------|---------|-----------|---------------|--------------------------------|"
      row("burrow"); row("podman")
      if (("burrow" in med) && ("podman" in med)) {
        printf "speed burrow/podman: %.2fx (ratio of the medians: %.0f ms / %.0f ms)\n", med["podman"] / med["burrow"], med["podman"], med["burrow"]
        # On a shared machine the wall time follows the load; the CPU time (user + sys of the
        # pull and its children) much less.
        printf "CPU time podman/burrow: %.2fx (medians: %.2f s / %.2f s); load average at the end: %s\n", cpu["podman"] / cpu["burrow"], cpu["podman"], cpu["burrow"], load
      }
    }' "$WORK/results"
}

main "$@"
