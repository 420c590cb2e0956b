# shellcheck shell=bash
# Helpers shared by hack/test.sh, hack/setup.sh and bench/start.sh. Source it (bash, run as root).
#
#   log MSG...                 timestamped message on stderr
#   die MSG...                 log and exit 1
#   require_root
#   ensure_packages PKG...     apt-get install what is missing (apt-get update first, only then)
#   ensure_cargo               put cargo on PATH (it lives in /root/.cargo/bin)
#   ensure_user NAME range|norange   create NAME if missing; give it a subuid/subgid range, or remove its
#   ensure_users               burrowtest (with a range) and burrownorange (without)
#   ensure_devices             /dev/fuse and /dev/net/tun mode 0666 (created if missing)
#   run_as_user USER [VAR=value...] CMD...   CMD as USER with a clean login-like environment
#   kill_user_processes USER   TERM, then (after a bounded wait) KILL every process of USER

BURROW_TEST_USER=${BURROW_TEST_USER:-burrowtest}
BURROW_NORANGE_USER=${BURROW_NORANGE_USER:-burrownorange}
# PATH of the unprivileged users' commands.
USER_PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

die() {
  log "ERROR: $*"
  exit 1
}

require_root() {
  [[ $(id -u) == 0 ]] || die "run this as root: sudo $0"
}

ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  fi
  # docker-registry's postinst starts the system-wide registry on :5000; tests start their own.
  if [[ -x /etc/init.d/docker-registry ]] && pgrep -u docker-registry -x docker-registry >/dev/null 2>&1; then
    log "stopping the system docker-registry daemon"
    /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
  fi
}

ensure_cargo() {
  local d
  if ! command -v cargo >/dev/null 2>&1; then
    for d in "${CARGO_HOME:-/root/.cargo}/bin" "$HOME/.cargo/bin" /root/.cargo/bin; do
      if [[ -x $d/cargo ]]; then
        PATH=$d:$PATH
        break
      fi
    done
  fi
  command -v cargo >/dev/null 2>&1 || die "cargo not found (expected in /root/.cargo/bin; install Rust with rustup)"
  export PATH
}

# First id after every range in FILE (/etc/subuid or /etc/subgid), at least 100000.
_next_free_subid() {
  awk -F: 'BEGIN { m = 100000 } NF == 3 && $2 + $3 > m { m = $2 + $3 } END { print m }' "$1"
}

ensure_user() {
  local name=$1 want=$2 uid kind file start
  if ! id "$name" >/dev/null 2>&1; then
    log "creating user $name"
    useradd -m -s /bin/bash "$name"
  fi
  uid=$(id -u "$name")
  for kind in uid gid; do
    file=/etc/sub$kind
    [[ -e $file ]] || touch "$file"
    if [[ $want == range ]]; then
      if ! grep -qE "^($name|$uid):" "$file"; then
        start=$(_next_free_subid "$file")
        log "giving $name the sub$kind range $start-$((start + 65535))"
        usermod "--add-sub${kind}s" "$start-$((start + 65535))" "$name"
      fi
    elif grep -qE "^($name|$uid):" "$file"; then
      log "removing $name's range from $file"
      sed -i -E "/^($name|$uid):/d" "$file"
    fi
  done
  install -d -o "$name" -g "$(id -g "$name")" -m 0700 "/run/user/$uid"
}

ensure_users() {
  ensure_user "$BURROW_TEST_USER" range
  ensure_user "$BURROW_NORANGE_USER" norange
}

ensure_devices() {
  if [[ ! -e /dev/net/tun ]]; then
    mkdir -p /dev/net
    mknod /dev/net/tun c 10 200
  fi
  [[ -e /dev/fuse ]] || mknod /dev/fuse c 10 229
  # Debian ships both 0666; some VMs have 0600, which makes FUSE and tap fail in a user namespace.
  chmod 0666 /dev/fuse /dev/net/tun
}

run_as_user() {
  local user=$1 uid home
  shift
  uid=$(id -u "$user")
  home=$(getent passwd "$user" | cut -d: -f6)
  (
    cd "$home" 2>/dev/null || cd /
    exec runuser -u "$user" -- env -i HOME="$home" USER="$user" LOGNAME="$user" PATH="$USER_PATH" \
      LANG=C.UTF-8 XDG_RUNTIME_DIR="/run/user/$uid" "$@"
  )
}

# Live (not zombie) processes of USER, as "PID COMM" lines. Zombies cannot be killed: on machines whose
# PID 1 does not reap, orphans of killed processes stay as zombies.
_live_processes() {
  ps -u "$1" -o pid=,stat=,comm= 2>/dev/null | awk '$2 !~ /^Z/ { print $1, $3 }'
}

kill_user_processes() {
  local user=$1 i live
  id "$user" >/dev/null 2>&1 || return 0
  live=$(_live_processes "$user")
  [[ -n $live ]] || return 0
  log "killing leftover processes of $user: $(tr '\n' ' ' <<<"$live")"
  pkill -TERM -u "$user" || true
  for ((i = 0; i < 50; i++)); do # up to 5 s for them to exit
    [[ -n $(_live_processes "$user") ]] || return 0
    sleep 0.1
  done
  pkill -KILL -u "$user" || true
}
