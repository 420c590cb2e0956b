#!/bin/bash
# CLI latency of the daemonless lifecycle, burrow beside Podman (when installed) in one run:
#   - `ps -a` with 0 and with NCONT (default 500) created containers,
#   - `exec CTR true` into a running container,
#   - `run -d IMG sleep 3600`: the time until the CLI returns (the container runs on).
# The image is the busybox test rootfs, imported into each engine. A measurement, not a test.
# `run -d` is timed in ROUNDS rounds that alternate between the engines (RUNS/ROUNDS runs each, after
# a warmup), its figures taken over all rounds: this VM's speed drifts by the minute, and a few ms
# of burrow's start move more with it than Podman's 200.
#
# Usage: sudo bench/cli.sh            RUNS=20 (after 3 warmups each), ROUNDS=4, NCONT=500, BENCH_USER=burrowtest
#        BUILT=1 sudo bench/cli.sh    uses target/release as it is (no cargo build first)
# Each engine runs as BENCH_USER on a private store (own HOME and XDG dirs), removed at the end.
# Podman is configured as ../shared/bench sets it up on these machines (cgroupfs, file events,
# runc, overlay); burrow does not depend on it.
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/lib/common.sh
source "$ROOT/hack/lib/common.sh"

RUNS=${RUNS:-20}
ROUNDS=${ROUNDS:-4}
WARMUP=3
NCONT=${NCONT:-500}
BENCH_USER=${BENCH_USER:-$BURROW_TEST_USER}
BENCH_PACKAGES=(uidmap busybox-static libseccomp-dev pkg-config hyperfine jq)
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR
WORK=""

cleanup() {
  local f pid
  [[ -n $WORK ]] || return 0
  # The pause processes keep each engine's user namespace (and mounts) alive.
  for f in "$WORK"/store-*/run/burrow/pause.pid "$WORK"/store-*/run/libpod/tmp/pause.pid; do
    pid=$(cat "$f" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] &&
      [[ $(awk '/^Uid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) == "$(id -u "$BENCH_USER")" ]]; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

# Runs as BENCH_USER, once per engine. Gets ENGINE (burrow or podman), BIN, TESTIMG, DIR, RUNS, WARMUP,
# NCONT; prints "METRIC<TAB>MEDIAN_MS<TAB>P90_MS" lines (or "METRIC<TAB>FAILED: reason").
# shellcheck disable=SC2016 # expanded by the inner shell
INNER='
set -euo pipefail
source "$BENCH_LIB"
private_dirs "$DIR"
log() { printf "[%s] %s: %s\n" "$(date +%H:%M:%S)" "$ENGINE" "$*" >&2; }
# bench METRIC COMMAND: checks that COMMAND works once, then times it.
bench() {
  local name=$1 cmd=$2 out
  if ! out=$($cmd 2>&1); then
    printf "%s\tFAILED: %s\n" "$name" "$(tail -n 1 <<<"$out")"
    return 0
  fi
  log "timing: $cmd"
  hyperfine -N --style none --warmup "$WARMUP" --runs "$RUNS" --export-json "$DIR/$name.json" "$cmd" >/dev/null
  printf "%s\t%s\n" "$name" "$(stats "$DIR/$name.json")"
}
E=$BIN
if [[ $ENGINE == podman ]]; then
  podman_config
  IMG=localhost/bench-bb
  "$TESTIMG" busybox-rootfs "$DIR/busybox.tar"
  $E import -q "$DIR/busybox.tar" "$IMG" >/dev/null
else
  IMG=bench-bb
  "$TESTIMG" busybox-rootfs "$DIR/busybox.tar"
  $E import "$DIR/busybox.tar" "$IMG" >/dev/null
fi
finish() { $E rm -af -t 0 >/dev/null 2>&1 || true; }
trap finish EXIT
bench ps0 "$E ps -a"
$E run -d --name bench-exec "$IMG" sleep 3600 >/dev/null
bench exec "$E exec bench-exec true"
$E rm -af -t 0 >/dev/null
log "creating $NCONT containers"
t0=$(date +%s%N)
for i in $(seq 1 "$NCONT"); do $E create --name "bench-$i" "$IMG" true >/dev/null; done
t1=$(date +%s%N)
printf "create\t%s\n" "$(( (t1 - t0) / 1000000 / NCONT ))"
bench psn "$E ps -a"
$E rm -af -t 0 >/dev/null
'

# One round of `run -d`, as BENCH_USER, in the store INNER left: appends its times (ms) to
# $DIR/rund.times. Gets ENGINE, BIN, DIR, RUNS (this round's).
# shellcheck disable=SC2016 # expanded by the inner shell
RUND_ROUND='
set -euo pipefail
source "$BENCH_LIB"
private_dirs "$DIR"
IMG=bench-bb
[[ $ENGINE == podman ]] && IMG=localhost/bench-bb
finish() { $BIN rm -af -t 0 >/dev/null 2>&1 || true; }
trap finish EXIT
hyperfine -N --style none --warmup 1 --runs "$RUNS" --export-json "$DIR/rund.json" "$BIN run -d $IMG sleep 3600" >/dev/null
jq -r ".results[0].times[] * 1000" "$DIR/rund.json" >>"$DIR/rund.times"
'

# MEDIAN<TAB>P90 of the numbers in FILE (one per line).
times_stats() {
  sort -g "$1" | awk '{ t[NR] = $1 } END {
    m = (NR % 2) ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2
    printf "%.1f\t%.1f\n", m, t[int(0.9 * (NR - 1) + 0.5) + 1] }'
}

report() {
  awk -F'\t' -v runs="$RUNS" -v rounds="$ROUNDS" -v warmup="$WARMUP" -v n="$NCONT" '
    { split($1, k, ":"); eng = k[1]; m = k[2]; med[eng, m] = $2; p90[eng, m] = $3; seen[eng] = 1 }
    function ok(e, m) { return ((e, m) in med) && med[e, m] !~ /^FAILED/ && med[e, m] > 0 }
    function cell(e, m) { if (!((e, m) in med)) return "-"; if (med[e, m] ~ /^FAILED/) return med[e, m]; return med[e, m] }
    function row(m, label, target) {
      ratio = (ok("burrow", m) && ok("podman", m)) ? sprintf("%.1fx", med["podman", m] / med["burrow", m]) : "-"
      printf "| %-34s | %12s | %12s | %12s | %-18s |\n", label, cell("burrow", m), cell("podman", m), ratio, target
    }
    END {
      printf "CLI latency, median ms (%d runs after %d warmups; hyperfine -N)\n", runs, warmup
      printf "| %-34s | %12s | %12s | %12s | %-18s |\n", "command", "burrow", "podman", "podman/burrow", "target"
      printf "|%s|%s|%s|%s|%s|\n", "------------------------------------", "--------------", "--------------", "--------------", "--------------------"
      row("ps0", "ps -a (0 containers)", "")
      row("psn", "ps -a (" n " containers)", "burrow <= 30 ms")
      row("exec", "exec CTR true", ">= 10x")
      row("rund", "run -d IMG sleep 3600 (returns)*", ">= 10x")
      row("create", "create (mean of " n " in a row)", "")
      printf "* in %d rounds alternating between the engines, %d runs each after a warmup\n", rounds, int((runs + rounds - 1) / rounds)
      if (!seen["podman"]) print "\npodman: not installed (apt-get install podman runc slirp4netns to compare)"
    }' "$1"
}

main() {
  require_root
  ensure_packages "${BENCH_PACKAGES[@]}"
  ensure_cargo
  ensure_user "$BENCH_USER" range
  ensure_devices
  if [[ ${BUILT:-0} != 1 ]]; then
    log "building burrow (release)"
    (cd "$ROOT" && cargo build --release --locked --bin burrow --bin burrow-testimg)
  fi
  WORK=$(mktemp -d /tmp/bc.XXXX) # short: sockets live below it
  install -m 0755 "$ROOT/target/release/burrow" "$ROOT/target/release/burrow-testimg" "$WORK/"
  chown "$BENCH_USER" "$WORK"
  chmod 0700 "$WORK"
  local engines=(burrow) e
  if command -v podman >/dev/null 2>&1; then
    ensure_packages runc slirp4netns
    engines+=(podman)
  fi
  : >"$WORK/results.tsv"
  local -A bins=()
  for e in "${engines[@]}"; do
    bins[$e]=$WORK/burrow
    [[ $e == burrow ]] || bins[$e]=$(command -v podman)
    log "benchmarking $e as $BENCH_USER"
    run_as_user "$BENCH_USER" BENCH_LIB="$ROOT/bench/lib/inner.sh" ENGINE="$e" BIN="${bins[$e]}" TESTIMG="$WORK/burrow-testimg" DIR="$WORK/store-$e" RUNS="$RUNS" \
      WARMUP="$WARMUP" NCONT="$NCONT" bash -c "$INNER" | sed "s/^/$e:/" >>"$WORK/results.tsv"
  done
  local round per_round=$(((RUNS + ROUNDS - 1) / ROUNDS))
  for round in $(seq 1 "$ROUNDS"); do
    for e in "${engines[@]}"; do
      log "run -d, round $round of $ROUNDS: $e"
      run_as_user "$BENCH_USER" BENCH_LIB="$ROOT/bench/lib/inner.sh" ENGINE="$e" BIN="${bins[$e]}" DIR="$WORK/store-$e" \
        RUNS="$per_round" bash -c "$RUND_ROUND" || printf "%s:rund\tFAILED: round %s\n" "$e" "$round" >>"$WORK/results.tsv"
    done
  done
  for e in "${engines[@]}"; do
    if [[ -s $WORK/store-$e/rund.times ]]; then
      printf "%s:rund\t%s\n" "$e" "$(times_stats "$WORK/store-$e/rund.times")" >>"$WORK/results.tsv"
    fi
  done
  report "$WORK/results.tsv"
}

main "$@"
