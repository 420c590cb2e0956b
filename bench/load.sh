#!/bin/bash
# Image store speed: `load -i` of a ~150 MB (gzip), 3-layer OCI archive and `images` with 200 images,
# burrow beside Podman (when installed) on the same input, in the same run. A measurement, not a test.
#
# Usage: sudo bench/load.sh      LOAD_RUNS=5 IMAGES_RUNS=30 BENCH_USER=burrowtest
#                                BURROW=PATH: a release binary to use instead of building target/release
# The archive is generated once (deterministically, python3) into /var/tmp/burrow-bench:
#   layer 0: 12 000 files of 1-16 KiB of text in 120 dirs (a system-like tree, ~100 MB, compressible)
#   layer 1: 20 000 files of 1 KiB (many small files, 20 MB)
#   layer 2: 4 files of 24 MiB of random bytes (incompressible, 96 MiB)
# Each engine gets a private store (own HOME and XDG dirs); `rmi -a -f` before each timed load.
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/lib/common.sh
source "$ROOT/hack/lib/common.sh"

LOAD_RUNS=${LOAD_RUNS:-5}
IMAGES_RUNS=${IMAGES_RUNS:-30}
BENCH_USER=${BENCH_USER:-$BURROW_TEST_USER}
BENCH_PACKAGES=(uidmap hyperfine jq python3)
CACHE=/var/tmp/burrow-bench
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR
WORK=""

cleanup() {
  local f pid
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

# shellcheck source=bench/lib/big-image.sh
source "$ROOT/bench/lib/big-image.sh"

# Runs as BENCH_USER. Gets BURROW, PODMAN, ARCHIVE, WORK, LOAD_RUNS, IMAGES_RUNS.
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
  log "$e: load -i (x$LOAD_RUNS, rmi -a -f before each)"
  if ! out=$($b load -q -i "$ARCHIVE" 2>&1); then
    printf "load-%s\tFAILED: %s\n" "$e" "$(tail -n 1 <<<"$out")"; continue
  fi
  hyperfine -N --style none --runs "$LOAD_RUNS" --prepare "$b rmi -a -f" \
    --export-json "$WORK/load-$e.json" "$b load -q -i $ARCHIVE" >/dev/null
  printf "load-%s\t%s\n" "$e" "$(stats "$WORK/load-$e.json")"
  $b rmi -a -f >/dev/null
done
# 200 distinct images (one small layer each, distinct configs), then `images`.
printf "tiny\n" >"$WORK/tiny.txt"
tar -C "$WORK" -cf "$WORK/tiny.tar" tiny.txt
for e in "${engines[@]}"; do
  b=$(bin "$e")
  log "$e: importing 200 images"
  for i in $(seq 1 200); do
    $b import -q --change "LABEL n=$i" "$WORK/tiny.tar" "localhost/img$i:latest" >/dev/null
  done
  n=$($b images -q | sort -u | wc -l)
  hyperfine -N --style none --warmup 3 --runs "$IMAGES_RUNS" \
    --export-json "$WORK/images-$e.json" "$b images" >/dev/null
  printf "images-%s\t%s\t%s\n" "$e" "$(stats "$WORK/images-$e.json")" "$n"
done
'

main() {
  require_root
  ensure_packages "${BENCH_PACKAGES[@]}"
  ensure_cargo
  ensure_user "$BENCH_USER" range
  ensure_devices
  local burrow=${BURROW:-$ROOT/target/release/burrow}
  if [[ -z ${BURROW:-} ]]; then
    log "building burrow (release)"
    (cd "$ROOT" && cargo build --release --locked --bin burrow)
  fi
  local archive=$CACHE/big.oci.tar
  make_archive "$archive"
  local mb
  mb=$(layers_mb "$archive")
  chmod 0755 "$CACHE"
  chmod 0644 "$archive"
  WORK=$(mktemp -d /tmp/bl.XXXX)
  install -m 0755 "$burrow" "$WORK/burrow"
  chown "$BENCH_USER" "$WORK"
  chmod 0700 "$WORK"
  local podman=""
  if command -v podman >/dev/null 2>&1; then
    ensure_packages runc
    podman=$(command -v podman)
  fi
  log "benchmarking as $BENCH_USER in $WORK"
  run_as_user "$BENCH_USER" BENCH_LIB="$ROOT/bench/lib/inner.sh" BURROW="$WORK/burrow" PODMAN="$podman" ARCHIVE="$archive" WORK="$WORK" \
    LOAD_RUNS="$LOAD_RUNS" IMAGES_RUNS="$IMAGES_RUNS" bash -c "$INNER" >"$WORK/results.tsv"
  awk -F'\t' -v mb="$mb" -v lr="$LOAD_RUNS" -v ir="$IMAGES_RUNS" '
    { med[$1] = $2; p90[$1] = $3; n[$1] = $4 }
    function ok(k) { return (k in med) && med[k] !~ /^FAILED/ && med[k] > 0 }
    function load(e) {
      if (!(("load-" e) in med)) return
      if (!ok("load-" e)) { printf "| %-38s | %s |\n", e " load -q -i big.oci.tar", med["load-" e]; return }
      printf "| %-38s | %8.0f | %8.0f | %7.1f |\n", e " load -q -i big.oci.tar", med["load-" e], p90["load-" e], mb / (med["load-" e] / 1000)
    }
    function images(e) {
      if (ok("images-" e)) printf "| %-38s | %8.1f | %8.1f |\n", e " images (" n["images-" e] " images)", med["images-" e], p90["images-" e]
    }
    END {
      printf "load of a 3-layer OCI archive, %.1f MB of gzip layers (%d runs; rmi -a -f before each)\n", mb, lr
      printf "| %-38s | %8s | %8s | %7s |\n", "command", "median ms", "p90 ms", "MB/s"
      print "|----------------------------------------|----------|----------|---------|"
      load("burrow"); load("podman")
      if (ok("load-burrow") && ok("load-podman")) printf "throughput burrow/podman: %.2fx (median)\n", med["load-podman"] / med["load-burrow"]
      printf "\nimages with 200 images (%d runs after 3 warmups; hyperfine -N)\n", ir
      printf "| %-38s | %8s | %8s |\n", "command", "median ms", "p90 ms"
      print "|----------------------------------------|----------|----------|"
      images("burrow"); images("podman")
      if (ok("images-burrow") && ok("images-podman")) printf "podman/burrow: %.1fx (median)\n", med["images-podman"] / med["images-burrow"]
    }' "$WORK/results.tsv"
}

main "$@"
