#!/bin/bash
# Return time of `burrow run -d --rm IMG true` with the monitor as a transient systemd user unit (through
# the manager's private socket, as from a login session, and through the user bus) and without
# (`--systemd=false`). Needs the user's systemd manager running (hack/test.sh starts one for burrowtest).
# A measurement, not a test: it prints hyperfine's numbers.
#
# Usage: sudo bench/run-detached.sh     RUNS=30, BENCH_USER=burrowtest; uses target/release/burrow (built).
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/lib/common.sh
source "$ROOT/hack/lib/common.sh"

RUNS=${RUNS:-30}
BENCH_USER=${BENCH_USER:-$BURROW_TEST_USER}
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR
WORK=""

cleanup() {
  local pid
  [[ -n $WORK ]] || return 0
  pid=$(cat "$WORK/run/burrow/pause.pid" 2>/dev/null || true)
  if [[ $pid =~ ^[0-9]+$ ]] &&
    [[ $(awk '/^Uid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) == "$(id -u "$BENCH_USER")" ]]; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

# shellcheck disable=SC2016 # expanded by the inner shell
INNER='
set -euo pipefail
export HOME=$WORK/home XDG_DATA_HOME=$WORK/data XDG_CONFIG_HOME=$WORK/config XDG_CACHE_HOME=$WORK/cache
mkdir -m 0700 -p "$HOME" "$XDG_DATA_HOME" "$XDG_CONFIG_HOME" "$XDG_CACHE_HOME" "$WORK/run"
B="$BURROW --runroot $WORK/run/burrow"
"$TESTIMG" busybox-rootfs "$WORK/busybox.tar"
$B import "$WORK/busybox.tar" bench-bb >/dev/null
export XDG_RUNTIME_DIR=/run/user/$(id -u)
# Check first that each way does what it says (a unit, or none), then time it.
id=$($B run -d bench-bb sleep 60)
systemctl --user is-active -q "burrow-$id.service" || { echo "run -d made no unit: is the manager running?"; exit 1; }
$B rm -f "$id" >/dev/null
hyperfine -N --warmup 3 --runs "$RUNS" \
  -n "run -d (transient unit, private socket)" "$B run -d --rm bench-bb true" \
  -n "run -d --systemd=false" "$B run -d --rm --systemd=false bench-bb true"
DBUS_SESSION_BUS_ADDRESS=unix:path=$XDG_RUNTIME_DIR/bus hyperfine -N --warmup 3 --runs "$RUNS" \
  -n "run -d (transient unit, user bus)" "$B run -d --rm bench-bb true"
$B rm -fa >/dev/null 2>&1 || true
$B unshare rm -rf "$XDG_DATA_HOME"
'

main() {
  require_root
  [[ -x $ROOT/target/release/burrow && -x $ROOT/target/release/burrow-testimg ]] ||
    die "build first: cargo build --release --bin burrow --bin burrow-testimg"
  WORK=$(mktemp -d /tmp/bd.XXXX)
  install -m 0755 "$ROOT/target/release/burrow" "$ROOT/target/release/burrow-testimg" "$WORK/"
  chown "$BENCH_USER" "$WORK"
  chmod 0700 "$WORK"
  runuser -u "$BENCH_USER" -- env -i PATH="$USER_PATH" LANG=C.UTF-8 WORK="$WORK" RUNS="$RUNS" \
    BURROW="$WORK/burrow" TESTIMG="$WORK/burrow-testimg" bash -c "$INNER"
}

main "$@"
