#!/bin/bash
# Return time of `run -d --rm IMG true` (IMG: the busybox test rootfs, imported): burrow with the monitor
# as a transient systemd user unit (through the manager's private socket, as from a login session, and
# through the user bus) and without (`--systemd=false`), beside `podman run -d` on the same rootfs (when
# installed) and the floors `true` and `burrow --version` (one process of the binary, no work), all in one
# run. Runs are back to back, and once more with 0.2 s of idle before each (unit, plain, podman): through
# systemd, a start after a quiet spell waits an RCU grace period for the cgroup migration (see
# systemd/src/warm.rs), which runs back to back mostly share. Needs the user's systemd manager running
# (hack/test.sh starts one for burrowtest). A measurement, not a test: it prints numbers.
#
# Usage: sudo bench/run-detached.sh   RUNS=30 (after 3 warmups each), BENCH_USER=burrowtest
# (Not at a real-time priority to shield it from other load: podman's Go runtime livelocks at SCHED_FIFO.)
# Uses target/release/burrow and burrow-testimg (build them first).
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/lib/common.sh
source "$ROOT/hack/lib/common.sh"

RUNS=${RUNS:-30}
WARMUP=3
BENCH_USER=${BENCH_USER:-$BURROW_TEST_USER}
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

# The part that runs as BENCH_USER. Gets BENCH_LIB, BURROW, TESTIMG, WORK, RUNS, WARMUP, PODMAN.
# shellcheck disable=SC2016 # expanded by the inner shell
INNER='
set -euo pipefail
source "$BENCH_LIB"
private_dirs "$WORK"

# bench NAME COMMAND: checks that COMMAND works once, then times it; prints "NAME<TAB>MEDIAN<TAB>P90<TAB>MIN"
# or "NAME<TAB>FAILED: reason". With IDLE=SECONDS, the machine idles that long before each run (untimed),
# as between commands typed at a terminal, instead of runs back to back.
bench() {
  local name=$1 cmd=$2 out
  local idle=()
  if [[ -n ${IDLE:-} ]]; then idle=(--prepare "sleep $IDLE"); fi
  if ! out=$($cmd 2>&1); then
    printf "%s\tFAILED: %s\n" "$name" "$(tail -n 1 <<<"$out")"
    return 0
  fi
  log "timing: $cmd ${IDLE:+(after ${IDLE} s idle each)}"
  hyperfine -N --style none --warmup "$WARMUP" --runs "$RUNS" "${idle[@]}" --export-json "$WORK/$name.json" "$cmd" >/dev/null
  printf "%s\t%s\t%s\n" "$name" "$(stats "$WORK/$name.json")" \
    "$(jq -r "[.results[0].times | min * 10000 | round / 10] | @tsv" "$WORK/$name.json")"
}

"$TESTIMG" busybox-rootfs "$WORK/busybox.tar"
(
  # burrow: the store private, the runtime dir the user manager listens in.
  export XDG_RUNTIME_DIR=/run/user/$(id -u)
  B="$BURROW --runroot $WORK/run/burrow"
  $B import "$WORK/busybox.tar" bench-bb >/dev/null
  # Check first that each way does what it says (a unit, or none).
  id=$($B run -d bench-bb sleep 60)
  if systemctl --user is-active -q "burrow-$id.service"; then
    bench sd-private "$B run -d --rm bench-bb true"
    DBUS_SESSION_BUS_ADDRESS=unix:path=$XDG_RUNTIME_DIR/bus bench sd-bus "$B run -d --rm bench-bb true"
    IDLE=0.2 bench sd-idle "$B run -d --rm bench-bb true"
  else
    printf "sd-private\tFAILED: run -d made no unit: is the systemd user manager running?\n"
  fi
  $B rm -f -t 0 "$id" >/dev/null
  bench plain "$B run -d --rm --systemd=false bench-bb true"
  IDLE=0.2 bench plain-idle "$B run -d --rm --systemd=false bench-bb true"
  bench version "$BURROW --version"
  bench true "true"
  $B rm -fa >/dev/null 2>&1 || true
)
if [[ -n $PODMAN ]]; then
  podman_config
  if out=$("$PODMAN" import -q "$WORK/busybox.tar" localhost/bench-bb 2>&1); then
    bench podman "$PODMAN run -d --rm localhost/bench-bb true"
    IDLE=0.2 bench podman-idle "$PODMAN run -d --rm localhost/bench-bb true"
  else
    printf "podman\tFAILED: import: %s\n" "$(tail -n 1 <<<"$out")"
  fi
  "$PODMAN" rm -fa >/dev/null 2>&1 || true
fi
'

report() {
  awk -F'\t' -v runs="$RUNS" -v warmup="$WARMUP" '
    { med[$1] = $2; p90[$1] = $3; mn[$1] = $4 }
    function row(name, cmd) {
      if (!(name in med)) return
      if (med[name] ~ /^FAILED/) printf "| %-58s | %s |\n", cmd, med[name]
      else printf "| %-58s | %8s | %8s | %8s |\n", cmd, med[name], p90[name], mn[name]
    }
    function ok(name) { return (name in med) && med[name] !~ /^FAILED/ && med[name] > 0 }
    END {
      printf "run -d return time, ms (%d runs after %d warmups; hyperfine -N)\n", runs, warmup
      printf "| %-58s | %8s | %8s | %8s |\n", "command", "median", "p90", "min"
      printf "|%s|%s|%s|%s|\n", "------------------------------------------------------------", "----------", "----------", "----------"
      row("sd-private", "burrow run -d --rm (transient unit, private socket)")
      row("sd-idle", "  the same, 0.2 s idle before each")
      row("sd-bus", "burrow run -d --rm (transient unit, user bus)")
      row("plain", "burrow run -d --rm --systemd=false")
      row("plain-idle", "  the same, 0.2 s idle before each")
      row("podman", "podman run -d --rm")
      row("podman-idle", "  the same, 0.2 s idle before each")
      row("version", "burrow --version (floor: one process of the binary)")
      row("true", "true (floor: one process)")
      print ""
      if (ok("podman")) {
        if (ok("sd-private")) printf "podman/burrow (unit):  %.1fx (median)\n", med["podman"] / med["sd-private"]
        if (ok("plain")) printf "podman/burrow (plain): %.1fx (median)\n", med["podman"] / med["plain"]
        if (ok("podman-idle")) {
          if (ok("sd-idle")) printf "podman/burrow (unit, idle before each):  %.1fx (median)\n", med["podman-idle"] / med["sd-idle"]
          if (ok("plain-idle")) printf "podman/burrow (plain, idle before each): %.1fx (median)\n", med["podman-idle"] / med["plain-idle"]
        }
      } else if (!("podman" in med)) print "podman: not installed (apt-get install podman runc to compare)"
    }' "$1"
}

main() {
  require_root
  [[ -x $ROOT/target/release/burrow && -x $ROOT/target/release/burrow-testimg ]] ||
    die "build first: cargo build --release --bin burrow --bin burrow-testimg"
  WORK=$(mktemp -d /tmp/bd.XXXX) # short: sockets live below it
  install -m 0755 "$ROOT/target/release/burrow" "$ROOT/target/release/burrow-testimg" "$WORK/"
  chown "$BENCH_USER" "$WORK"
  chmod 0700 "$WORK"
  local podman=""
  if command -v podman >/dev/null 2>&1; then podman=$(command -v podman); fi
  log "benchmarking as $BENCH_USER in $WORK"
  run_as_user "$BENCH_USER" BENCH_LIB="$ROOT/bench/lib/inner.sh" BURROW="$WORK/burrow" \
    TESTIMG="$WORK/burrow-testimg" WORK="$WORK" RUNS="$RUNS" WARMUP="$WARMUP" PODMAN="$podman" \
    bash -c "$INNER" >"$WORK/results.tsv"
  report "$WORK/results.tsv"
}

main "$@"
