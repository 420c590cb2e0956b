#!/bin/bash
# One command from a checkout to a running container: installs burrow's runtime dependencies, builds burrow
# (release) and installs it as /usr/local/bin/burrow, prepares USER (subuid/subgid range, devices, runtime
# dir), then as USER imports a busybox image and runs `burrow run --rm busybox echo "hello from burrow"`.
#
# Usage: sudo hack/setup.sh [USER]
#   USER defaults to $SUDO_USER, else burrowtest (created if missing).
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/lib/common.sh
source "$ROOT/hack/lib/common.sh"
# shellcheck source=hack/lib/systemd-user.sh
source "$ROOT/hack/lib/systemd-user.sh"

RUNTIME_PACKAGES=(uidmap busybox-static libseccomp-dev pkg-config)
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR
WORK=""

cleanup() {
  [[ -z $WORK ]] || rm -rf "$WORK"
}
trap cleanup EXIT

pick_user() {
  local user=${1:-${SUDO_USER:-}}
  [[ -n $user && $user != root ]] || user=$BURROW_TEST_USER
  if ! id "$user" >/dev/null 2>&1 && [[ $user != "$BURROW_TEST_USER" ]]; then
    die "no user '$user' (give an existing user, or none to use $BURROW_TEST_USER)"
  fi
  echo "$user"
}

build_and_install() {
  log "building burrow (release)"
  (cd "$ROOT" && cargo build --release --locked --bin burrow --bin burrow-testimg)
  install -m 0755 "$ROOT/target/release/burrow" /usr/local/bin/burrow
  log "installed /usr/local/bin/burrow ($(/usr/local/bin/burrow --version 2>/dev/null || echo 'version unknown'))"
}

first_container() {
  local user=$1 tar
  # A world-readable work dir: the user runs the generator from it, whatever the checkout's permissions.
  WORK=$(mktemp -d /tmp/burrow-setup.XXXXXX)
  chmod 0755 "$WORK"
  install -m 0755 "$ROOT/target/release/burrow-testimg" "$WORK/burrow-testimg"
  chown "$user" "$WORK"
  tar=$WORK/busybox.tar
  log "building a busybox rootfs tarball as $user"
  run_as_user "$user" "$WORK/burrow-testimg" busybox-rootfs "$tar"
  log "as $user: burrow import $tar busybox"
  run_as_user "$user" burrow import "$tar" busybox
  log "as $user: burrow run --rm busybox echo \"hello from burrow\""
  run_as_user "$user" burrow run --rm busybox echo "hello from burrow"
}

main() {
  require_root
  local user
  user=$(pick_user "$@")
  ensure_packages "${RUNTIME_PACKAGES[@]}"
  ensure_cargo
  build_and_install
  install_user_generator /usr/local/bin/burrow
  ensure_user "$user" range
  ensure_devices
  first_container "$user"
  cat <<EOF

Done:
  - packages: ${RUNTIME_PACKAGES[*]}
  - /usr/local/bin/burrow (release build of $ROOT)
  - quadlet: /usr/lib/systemd/user-generators/burrow-user-generator -> /usr/local/bin/burrow
  - $user: subuid/subgid ranges (start:count) $(grep -hE "^($user|$(id -u "$user")):" /etc/subuid /etc/subgid |
    cut -d: -f2-3 | paste -sd' '), runtime dir /run/user/$(id -u "$user")
  - /dev/fuse and /dev/net/tun: mode 0666
  - image 'busybox' in $user's store; try:
      sudo -iu $user env XDG_RUNTIME_DIR=/run/user/$(id -u "$user") burrow run --rm -it busybox sh
EOF
}

main "$@"
