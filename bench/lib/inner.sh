# shellcheck shell=bash
# Sourced by the benchmarks' parts that run as the bench user (their INNER scripts, through
# BENCH_LIB): one private store per run, and the helpers they all use.
#
#   private_dirs BASE   HOME and the XDG dirs under BASE (created 0700), exported
#   log MSG...          timestamped message on stderr
#   stats FILE          "MEDIAN<TAB>P90" in ms of a hyperfine JSON export
#   podman_config       Podman's rootless settings for this machine (shared/HOST.md) in XDG_CONFIG_HOME

private_dirs() {
  export HOME=$1/home XDG_DATA_HOME=$1/data XDG_CONFIG_HOME=$1/config XDG_CACHE_HOME=$1/cache \
    XDG_RUNTIME_DIR=$1/run
  mkdir -m 0700 -p "$HOME" "$XDG_DATA_HOME" "$XDG_CONFIG_HOME" "$XDG_CACHE_HOME" "$XDG_RUNTIME_DIR"
}

log() { printf "[%s] %s\n" "$(date +%H:%M:%S)" "$*" >&2; }

stats() {
  jq -r ".results[0].times | sort | . as \$t | length as \$n
    | [(if \$n % 2 == 1 then \$t[(\$n - 1) / 2] else (\$t[\$n / 2 - 1] + \$t[\$n / 2]) / 2 end),
       \$t[((0.9 * (\$n - 1)) | round)]]
    | map(. * 1000 * 10 | round / 10) | @tsv" "$1"
}

podman_config() {
  mkdir -p "$XDG_CONFIG_HOME/containers"
  printf '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n' \
    >"$XDG_CONFIG_HOME/containers/containers.conf"
  printf '[storage]\ndriver = "overlay"\n' >"$XDG_CONFIG_HOME/containers/storage.conf"
}
