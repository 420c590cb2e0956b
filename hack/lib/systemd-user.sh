# shellcheck shell=bash
# A real systemd user manager for a test user on a machine whose PID 1 is not systemd (steps from
# shared/HOST.md). Source after hack/lib/common.sh.
#
#   systemd_user_start USER   start `systemd --user` for USER and wait (at most SYSTEMD_USER_WAIT seconds,
#                             default 20) until `systemctl --user is-system-running` answers running or
#                             degraded. Returns 0 then; otherwise logs why, stops what it started, returns 1.
#                             A manager already running for USER is used as is (systemd_user_stop
#                             leaves it alone).
#   systemd_user_stop         stop the manager systemd_user_start started, by pid; no-op otherwise.

SYSTEMD_USER_PID=""  # pid of our `runuser ... systemd --user` (its child is the manager)
SYSTEMD_USER_LOG=""  # the manager's stdout/stderr

# Prints what `systemctl --user is-system-running` answers for USER (nothing if it cannot connect).
_systemd_user_state() {
  local user=$1 uid
  uid=$(id -u "$user")
  runuser -u "$user" -- env -i PATH="$USER_PATH" XDG_RUNTIME_DIR="/run/user/$uid" \
    timeout 5 systemctl --user is-system-running 2>/dev/null || true
}

systemd_user_start() {
  local user=$1 uid home cg hier state deadline
  local hierarchies=()
  uid=$(id -u "$user")
  home=$(getent passwd "$user" | cut -d: -f6)
  if [[ ! -x /lib/systemd/systemd ]]; then
    log "systemd user manager: /lib/systemd/systemd is missing (apt-get install systemd)"
    return 1
  fi
  state=$(_systemd_user_state "$user")
  if [[ $state == running || $state == degraded ]]; then
    log "systemd user manager for $user already $state: using it"
    return 0
  fi

  # systemd decides from this dir whether the system was booted with systemd.
  mkdir -p /run/systemd/system
  install -d -o "$user" -g "$(id -g "$user")" -m 0700 "/run/user/$uid"
  # systemd refuses to run in a cgroup it cannot own: make user@UID.service in each hierarchy and give
  # it to the user (v1 name=systemd plus the empty cgroup2 of the hybrid layout, or a pure cgroup2).
  cg=user.slice/user-$uid.slice/user@$uid.service
  for hier in /sys/fs/cgroup/systemd /sys/fs/cgroup/unified; do
    [[ -d $hier ]] && hierarchies+=("$hier/$cg")
  done
  if ((${#hierarchies[@]} == 0)) && [[ -e /sys/fs/cgroup/cgroup.procs ]]; then
    hierarchies+=("/sys/fs/cgroup/$cg")
  fi
  if ((${#hierarchies[@]} == 0)); then
    log "systemd user manager: no systemd or unified cgroup hierarchy under /sys/fs/cgroup"
    return 1
  fi
  if ! mkdir -p "${hierarchies[@]}" || ! chown -R "$user:$(id -g "$user")" "${hierarchies[@]}"; then
    log "systemd user manager: cannot create or chown ${hierarchies[*]}"
    return 1
  fi

  SYSTEMD_USER_LOG=$(mktemp /tmp/burrow-systemd-user.XXXXXX)
  # The subshell moves itself into the cgroups, then becomes runuser, whose child is the manager.
  (
    for hier in "${hierarchies[@]}"; do
      echo "$BASHPID" >"$hier/cgroup.procs"
    done
    exec runuser -u "$user" -- env -i HOME="$home" USER="$user" LOGNAME="$user" PATH="$USER_PATH" \
      XDG_RUNTIME_DIR="/run/user/$uid" /lib/systemd/systemd --user
  ) </dev/null >"$SYSTEMD_USER_LOG" 2>&1 &
  SYSTEMD_USER_PID=$!

  deadline=$((SECONDS + ${SYSTEMD_USER_WAIT:-20}))
  log "waiting (at most ${SYSTEMD_USER_WAIT:-20} s) for the systemd user manager of $user to be running"
  while ((SECONDS < deadline)); do
    state=$(_systemd_user_state "$user")
    if [[ $state == running || $state == degraded ]]; then
      log "systemd user manager for $user is $state (runuser pid $SYSTEMD_USER_PID)"
      return 0
    fi
    if ! kill -0 "$SYSTEMD_USER_PID" 2>/dev/null; then
      wait "$SYSTEMD_USER_PID" || true
      SYSTEMD_USER_PID=""
      log "systemd user manager for $user exited at start; its output:"
      sed 's/^/    /' "$SYSTEMD_USER_LOG" >&2
      rm -f "$SYSTEMD_USER_LOG"
      return 1
    fi
    sleep 0.2
  done
  log "systemd user manager for $user not running after ${SYSTEMD_USER_WAIT:-20} s (state: ${state:-no answer}); its output:"
  sed 's/^/    /' "$SYSTEMD_USER_LOG" >&2
  systemd_user_stop
  return 1
}

systemd_user_stop() {
  [[ -n $SYSTEMD_USER_PID ]] || return 0
  local manager i
  manager=$(pgrep -P "$SYSTEMD_USER_PID" -x systemd || true)
  log "stopping the systemd user manager (pid ${manager:-?}, runuser pid $SYSTEMD_USER_PID)"
  # SIGTERM makes `systemd --user` stop its units and exit.
  kill -TERM "${manager:-$SYSTEMD_USER_PID}" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do # up to 10 s
    kill -0 "$SYSTEMD_USER_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$SYSTEMD_USER_PID" 2>/dev/null; then
    log "systemd user manager did not exit within 10 s: killing it"
    kill -KILL ${manager:+"$manager"} "$SYSTEMD_USER_PID" 2>/dev/null || true
  fi
  wait "$SYSTEMD_USER_PID" 2>/dev/null || true
  SYSTEMD_USER_PID=""
  rm -f "$SYSTEMD_USER_LOG"
}

# install_user_generator BINARY: makes BINARY systemd's user generator for quadlet files, as Podman's package
# installs podman-user-generator (systemd looks for user generators only in system dirs).
install_user_generator() {
  local bin=$1 dir=/usr/lib/systemd/user-generators
  mkdir -p "$dir"
  ln -sfn "$bin" "$dir/burrow-user-generator"
  log "quadlet: $dir/burrow-user-generator -> $bin"
}
