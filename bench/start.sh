#!/bin/bash
# Start latency of `burrow run --rm IMG true` (IMG: the busybox test rootfs, imported), beside the kernel
# floor `unshare -Urmpf --mount-proc true` and, if installed, `podman run --rm` on the same rootfs; plus
# the peak RSS of the burrow CLI process. A measurement, not a test: it prints numbers.
#
# Usage: sudo bench/start.sh          RUNS=30 (after 3 warmups each), BENCH_USER=burrowtest
# Everything is timed by hyperfine (-N: no shell in between) inside one shell of BENCH_USER, on a private
# store (own HOME and XDG dirs) that is removed at the end.
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/lib/common.sh
source "$ROOT/hack/lib/common.sh"

RUNS=${RUNS:-30}
WARMUP=3
BENCH_USER=${BENCH_USER:-$BURROW_TEST_USER}
BENCH_PACKAGES=(uidmap busybox-static libseccomp-dev pkg-config hyperfine time jq)
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR
WORK=""

cleanup() {
  local f pid
  [[ -n $WORK ]] || return 0
  # Pause processes keep the user namespaces (and their mounts) alive: stop them, then remove the store.
  for f in "$WORK/run/burrow/pause.pid" "$WORK/run/libpod/tmp/pause.pid"; do
    pid=$(cat "$f" 2>/dev/null || true)
    # Only if that pid still is a process of the bench user (pid files can outlive their process).
    if [[ $pid =~ ^[0-9]+$ ]] &&
      [[ $(awk '/^Uid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) == "$(id -u "$BENCH_USER")" ]]; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

# The part that runs as BENCH_USER, in one shell. Gets BURROW, TESTIMG, WORK, RUNS, WARMUP, PODMAN.
# shellcheck disable=SC2016 # expanded by the inner shell
INNER='
set -euo pipefail
source "$BENCH_LIB"
private_dirs "$WORK"


# bench NAME COMMAND: first checks that COMMAND works once, then times it; prints "NAME<TAB>MEDIAN<TAB>P90"
# or "NAME<TAB>FAILED: reason".
bench() {
  local name=$1 cmd=$2 out
  if ! out=$($cmd 2>&1); then
    printf "%s\tFAILED: %s\n" "$name" "$(tail -n 1 <<<"$out")"
    return 0
  fi
  log "timing: $cmd"
  hyperfine -N --style none --warmup "$WARMUP" --runs "$RUNS" --export-json "$WORK/$name.json" "$cmd" >/dev/null
  printf "%s\t%s\n" "$name" "$(stats "$WORK/$name.json")"
}

"$TESTIMG" busybox-rootfs "$WORK/busybox.tar"
if out=$("$BURROW" import "$WORK/busybox.tar" bench-bb 2>&1); then
  bench burrow "$BURROW run --rm bench-bb true"
else
  printf "burrow\tFAILED: import: %s\n" "$(tail -n 1 <<<"$out")"
fi
bench floor "unshare -Urmpf --mount-proc true"
if [[ -n $PODMAN ]]; then
  # As shared/bench/lib.sh: hybrid cgroup v1 without systemd, crun refuses hybrid mode, overlay not vfs.
  podman_config
  if out=$("$PODMAN" import -q "$WORK/busybox.tar" localhost/bench-bb 2>&1); then
    bench podman "$PODMAN run --rm localhost/bench-bb true"
  else
    printf "podman\tFAILED: import: %s\n" "$(tail -n 1 <<<"$out")"
  fi
fi
if rss=$(/usr/bin/time -f %M "$BURROW" run --rm bench-bb true 2>&1 >/dev/null); then
  printf "rss\t%s\n" "$(tail -n 1 <<<"$rss")"
fi
'

# Renders the inner script's "NAME<TAB>..." lines as a table with ratios.
report() {
  local results=$1 podman_cmd=$2
  awk -F'\t' -v runs="$RUNS" -v warmup="$WARMUP" -v podman_cmd="$podman_cmd" '
    $1 == "rss" { rss = $2; next }
    { med[$1] = $2; p90[$1] = $3 }
    function row(name, cmd) {
      if (!(name in med)) return
      if (med[name] ~ /^FAILED/) printf "| %-42s | %s |\n", cmd, med[name]
      else printf "| %-42s | %9s | %9s |\n", cmd, med[name], p90[name]
    }
    function ok(name) { return (name in med) && med[name] !~ /^FAILED/ && med[name] > 0 }
    END {
      printf "start latency, ms (%d runs after %d warmups; hyperfine -N)\n", runs, warmup
      printf "| %-42s | %9s | %9s |\n", "command", "median", "p90"
      printf "|%s|%s|%s|\n", "--------------------------------------------", "-----------", "-----------"
      row("burrow", "burrow run --rm bench-bb true")
      row("floor", "unshare -Urmpf --mount-proc true (floor)")
      row("podman", podman_cmd)
      print ""
      if (ok("burrow") && ok("floor")) printf "burrow/floor:  %.1fx (median)\n", med["burrow"] / med["floor"]
      if (ok("burrow") && ok("podman")) printf "podman/burrow: %.1fx (median)\n", med["podman"] / med["burrow"]
      if (!("podman" in med)) print "podman: not installed (apt-get install podman runc to compare)"
      if (rss != "") printf "peak RSS of the burrow CLI process (/usr/bin/time -f %%M): %s KiB\n", rss
    }' "$results"
}

main() {
  require_root
  ensure_packages "${BENCH_PACKAGES[@]}"
  ensure_cargo
  ensure_user "$BENCH_USER" range
  ensure_devices
  log "building burrow (release)"
  (cd "$ROOT" && cargo build --release --locked --bin burrow --bin burrow-testimg)

  WORK=$(mktemp -d /tmp/bb.XXXX) # short: sockets live below it
  install -m 0755 "$ROOT/target/release/burrow" "$ROOT/target/release/burrow-testimg" "$WORK/"
  chown "$BENCH_USER" "$WORK"
  chmod 0700 "$WORK"
  local podman="" podman_cmd=""
  if command -v podman >/dev/null 2>&1; then
    # Rootless podman here needs runc (crun refuses hybrid cgroups) and slirp4netns (default network).
    ensure_packages runc slirp4netns
    podman=$(command -v podman)
    podman_cmd="podman run --rm localhost/bench-bb true"
  fi
  log "benchmarking as $BENCH_USER in $WORK"
  run_as_user "$BENCH_USER" BENCH_LIB="$ROOT/bench/lib/inner.sh" BURROW="$WORK/burrow" TESTIMG="$WORK/burrow-testimg" WORK="$WORK" RUNS="$RUNS" \
    WARMUP="$WARMUP" PODMAN="$podman" bash -c "$INNER" >"$WORK/results.tsv"
  report "$WORK/results.tsv" "$podman_cmd"
}

main "$@"
