#!/bin/bash
# burrow's test suite, as CI runs it (.ci/run calls this):
#   packages, test users, devices, a systemd user manager for burrowtest, then
#   build + rustfmt + clippy + unit tests (as root), then the end-to-end suite (tests/tests/e2e) run as
#   burrowtest (has a subuid range; every test but the norange_ and asroot_ ones), as burrownorange (no
#   range; only the norange_ ones) and as root (only the asroot_ ones, which run burrow as burrowtest).
#
# Usage: sudo hack/test.sh
#   BURROW_TEST_FILTER=NAME   run only the e2e tests whose name contains NAME (build steps still run)
#   E2E_TIMEOUT=SECONDS       limit of each e2e pass (default 1800): a hung suite fails instead of eating CI
#   BURROW_TEST_QUICK=1       developer loop on a machine already set up by a full run: only build and the
#                             e2e suite; no packages, fmt, clippy or unit tests, an already running systemd
#                             user manager is used, and the test users' processes are not killed at the end
#                             (several checkouts may run their suites at once).
# Idempotent; safe to re-run. Exits non-zero if any step or test fails.
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/lib/common.sh
source "$ROOT/hack/lib/common.sh"
# shellcheck source=hack/lib/systemd-user.sh
source "$ROOT/hack/lib/systemd-user.sh"

TEST_PACKAGES=(uidmap busybox-static libseccomp-dev pkg-config util-linux bsdutils procps iproute2 fuse3 jq
  skopeo docker-registry systemd dbus-user-session time hyperfine openssl gcc)
FILTER=${BURROW_TEST_FILTER:-}
QUICK=${BURROW_TEST_QUICK:-0}
E2E_TIMEOUT=${E2E_TIMEOUT:-1800}
# The scripts build into the workspace's own target/ (the users run the binaries from there).
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR
TARGET=$ROOT/target
BURROW_BIN=$TARGET/debug/burrow
E2E_BIN=""
BURROW_TEST_SYSTEMD=0
TESTS_STARTED=0
LOG_DIR=""      # runners' output, for the summary
USER_TMPDIRS=() # per-user BURROW_TEST_TMPDIR, removed at exit

# Stops the systemd manager, kills what the test users left (only once tests ran: before that, their
# processes are not ours), removes their temp dirs. Idempotent: main calls it before the summary (so the
# total is the last line printed), the EXIT trap again in any case.
teardown() {
  local d
  # Cleanup reports problems but never fails the run: the tests' verdict is what counts.
  systemd_user_stop || log "could not stop the systemd user manager"
  if ((TESTS_STARTED && !QUICK)); then
    kill_user_processes "$BURROW_TEST_USER" || true
    kill_user_processes "$BURROW_NORANGE_USER" || true
  fi
  for d in "${USER_TMPDIRS[@]}"; do
    rm -rf --one-file-system "$d" || log "could not remove $d"
  done
  USER_TMPDIRS=()
  return 0
}

cleanup() {
  local rc=$?
  set +e
  teardown
  [[ -z $LOG_DIR ]] || rm -rf "$LOG_DIR"
  exit "$rc"
}
trap cleanup EXIT

step_packages() {
  log "== packages"
  ensure_packages "${TEST_PACKAGES[@]}"
  ensure_cargo
}

step_users_and_devices() {
  log "== users and devices"
  ensure_users
  ensure_devices
  install_user_generator "$BURROW_BIN"
}

step_systemd() {
  log "== systemd user manager for $BURROW_TEST_USER"
  if systemd_user_start "$BURROW_TEST_USER"; then
    BURROW_TEST_SYSTEMD=1
  else
    log "continuing without a systemd user manager: tests that need one check BURROW_TEST_SYSTEMD"
  fi
}

step_build() {
  cd "$ROOT"
  log "== cargo build"
  cargo build --workspace --locked
  if ((QUICK)); then return 0; fi
  log "== cargo fmt --check"
  local color=()
  [[ -t 1 ]] || color=(--color never) # rustfmt colours its diff even into a file
  cargo fmt --all -- --check "${color[@]}"
  log "== cargo clippy"
  cargo clippy --workspace --all-targets --locked -- -D warnings
  log "== unit tests (as root)"
  cargo test --workspace --lib --bins --locked --no-fail-fast 2>&1 | tee "$LOG_DIR/unit.log"
}

step_build_e2e() {
  log "== build the e2e suite"
  cd "$ROOT"
  E2E_BIN=$(cargo test -p burrow-tests --no-run --locked --message-format=json-render-diagnostics |
    jq -r 'select(.reason == "compiler-artifact" and .target.name == "e2e" and .executable != null)
           | .executable' | tail -n 1)
  [[ -n $E2E_BIN && -x $E2E_BIN ]] || die "no e2e test executable in cargo's output"
  log "e2e suite: $E2E_BIN"
  # The users run both binaries from target/: it must be readable by them.
  local bin
  for bin in "$BURROW_BIN" "$E2E_BIN"; do
    if ! runuser -u "$BURROW_TEST_USER" -- test -x "$bin"; then
      log "$bin is not reachable by $BURROW_TEST_USER: opening up $TARGET"
      chmod -R go+rX "$TARGET"
      runuser -u "$BURROW_TEST_USER" -- test -x "$bin" ||
        die "$bin is not reachable by $BURROW_TEST_USER (is the checkout under a 0700 dir such as /root?)"
    fi
  done
}

# run_e2e USER NAME ARGS... : runs the e2e binary as USER with libtest ARGS; output in $LOG_DIR/NAME.log.
run_e2e() {
  local user=$1 name=$2 uid home tmp rc=0
  shift 2
  uid=$(id -u "$user")
  home=$(getent passwd "$user" | cut -d: -f6)
  tmp=$(mktemp -d /tmp/bt.XXXX) # short: sockets live below it (108-byte limit)
  USER_TMPDIRS+=("$tmp")
  chown "$user:$(id -g "$user")" "$tmp"
  chmod 0700 "$tmp"
  install -d -o "$user" -g "$(id -g "$user")" -m 0700 "/run/user/$uid"
  log "== e2e as $user: $*"
  TESTS_STARTED=1
  (
    cd "$tmp"
    exec timeout -k 30 "$E2E_TIMEOUT" runuser -u "$user" -- env -i HOME="$home" USER="$user" LOGNAME="$user" PATH="$USER_PATH" \
      LANG=C.UTF-8 RUST_BACKTRACE="${RUST_BACKTRACE:-0}" XDG_RUNTIME_DIR="/run/user/$uid" \
      BURROW_BIN="$BURROW_BIN" BURROW_TEST_SYSTEMD="$BURROW_TEST_SYSTEMD" BURROW_TEST_TMPDIR="$tmp" \
      BURROW_TEST_USER="$BURROW_TEST_USER" \
      "$E2E_BIN" "$@"
  ) 2>&1 | tee "$LOG_DIR/$name.log" || rc=$?
  ((rc != 124)) || log "the e2e pass as $user took longer than E2E_TIMEOUT=$E2E_TIMEOUT s: stopped"
  return "$rc"
}

# selected_tests PATTERN: the e2e tests the filter selects whose name contains PATTERN.
selected_tests() {
  "$E2E_BIN" --list ${FILTER:+"$FILTER"} 2>/dev/null | sed -n 's/: test$//p' | grep -F "$1" || true
}

step_e2e() {
  local rc=0 norange=() asroot=()
  # Every test except the norange_ and asroot_ ones, as the user with a subuid range.
  run_e2e "$BURROW_TEST_USER" e2e-range ${FILTER:+"$FILTER"} --skip norange_ --skip asroot_ --test-threads=2 || rc=1
  # The norange_ tests (those the filter selects), as the user without one.
  mapfile -t norange < <(selected_tests norange_)
  if ((${#norange[@]})); then
    run_e2e "$BURROW_NORANGE_USER" e2e-norange --exact --test-threads=2 "${norange[@]}" || rc=1
  else
    log "no norange_ test selected by the filter '$FILTER': skipping the $BURROW_NORANGE_USER pass"
  fi
  # The asroot_ tests, as root (they run burrow as the user with a range).
  mapfile -t asroot < <(selected_tests asroot_)
  if ((${#asroot[@]})); then
    run_e2e root e2e-root --exact --test-threads=1 "${asroot[@]}" || rc=1
  else
    log "no asroot_ test selected by the filter '$FILTER': skipping the root pass"
  fi
  return "$rc"
}

# Prints each runner's closing line and the total; the exit status is left to the caller.
summary() {
  local f line passed=0 failed=0 p q
  log "== summary"
  for f in "$LOG_DIR"/unit.log "$LOG_DIR"/e2e-range.log "$LOG_DIR"/e2e-norange.log "$LOG_DIR"/e2e-root.log; do
    [[ -e $f ]] || continue
    while IFS= read -r line; do
      p=$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$line")
      q=$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$line")
      passed=$((passed + ${p:-0}))
      failed=$((failed + ${q:-0}))
      [[ $f == */unit.log ]] || printf '%-12s %s\n' "$(basename "$f" .log):" "$line"
    done < <(grep -E '^test result:' "$f")
    if ! grep -qE '^test result:' "$f"; then
      printf '%-12s %s\n' "$(basename "$f" .log):" "no result: the runner did not finish (counted as 1 failed)"
      failed=$((failed + 1))
    fi
    [[ $f == */unit.log ]] && printf '%-12s %s passed, %s failed\n' "unit:" "$passed" "$failed"
  done
  echo "total: $passed passed, $failed failed"
}

main() {
  require_root
  LOG_DIR=$(mktemp -d /tmp/burrow-test-logs.XXXXXX)
  if ((QUICK)); then
    ensure_cargo
    if [[ $(_systemd_user_state "$BURROW_TEST_USER") =~ ^(running|degraded)$ ]]; then BURROW_TEST_SYSTEMD=1; fi
  else
    step_packages
    step_users_and_devices
    step_systemd
  fi
  step_build
  step_build_e2e
  local rc=0
  step_e2e || rc=1
  teardown
  if ((rc == 0)); then log "all tests passed"; else log "ERROR: end-to-end tests failed"; fi
  summary
  return "$rc"
}

main "$@"
