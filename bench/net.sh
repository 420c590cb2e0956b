#!/bin/bash
# TCP throughput (iperf3) between a container network namespace and the host's loopback, through
# burrow's userspace stack (`burrow __netstack`) beside slirp4netns (--mtu 65520, its API for the
# published port) and pasta (when installed), driving the same kind of namespace. Also the CPU
# seconds the stack process spends per GB moved. A measurement, not a test: it prints numbers.
#
# Plus a request/response rate (sockperf ping-pong, one 64-byte message each way per transaction),
# container -> host, in thousands of transactions per second, with the stack's CPU µs per transaction.
#
# Usage: sudo bench/net.sh       RUNS=3 (rounds, every engine once per round; median of), T=5 (seconds per iperf3 run), BENCH_USER=burrowtest,
#                                BURROW=path (skip the release build), ENGINES="burrow slirp4netns pasta pasta-tap"
# Directions: ctr->host (iperf3 -c 10.0.2.2 inside, server on host 127.0.0.1, allow_host_loopback),
# host->ctr (the same with -R), published (server inside, host client to 127.0.0.1:HOSTPORT via -p).
# pasta: its spliced loopback paths (-T, -t); pasta-tap: its tap path, where the container dials
# the gateway as with burrow and slirp4netns. burrow splices a published port's loopback clients.
# Every connection goes to 127.0.0.1 on the host or to addresses inside the namespace.
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/lib/common.sh
source "$ROOT/hack/lib/common.sh"

RUNS=${RUNS:-3}
T=${T:-5}
BENCH_USER=${BENCH_USER:-$BURROW_TEST_USER}
ENGINES=${ENGINES:-burrow slirp4netns pasta pasta-tap}
BENCH_PACKAGES=(uidmap util-linux iperf3 sockperf slirp4netns passt socat jq)
unset CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR
WORK=""

cleanup() {
  [[ -n $WORK ]] || return 0
  rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

# The part that runs as BENCH_USER. Gets BURROW, WORK, RUNS, T, ENGINES. Prints
# "ENGINE<TAB>DIRECTION<TAB>GBITS_MEDIAN<TAB>ALL_RUNS<TAB>CPU_S_PER_GB" lines.
# shellcheck disable=SC2016 # expanded by the inner shell
INNER='
set -euo pipefail
log() { printf "[%s] %s\n" "$(date +%H:%M:%S)" "$*" >&2; }
# Whatever this shell started (namespaces, stacks, servers) goes with it.
trap "kill \$(jobs -p) 2>/dev/null || true" EXIT
TCK=$(getconf CLK_TCK)
SPORT=15201 HPORT=15202 RRPORT=15203
median() { sort -g | awk "{ a[NR] = \$1 } END { if (NR == 0) print \"-\"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }"; }
cpu_ticks() { if [[ -n ${1:-} && -r /proc/$1/stat ]]; then awk "{ print \$14 + \$15 }" "/proc/$1/stat"; else echo 0; fi; }

start_ns() {
  unshare -Urn sleep 3600 &
  NS=$!
  while [[ $(cat /proc/$NS/comm 2>/dev/null) != sleep ]]; do sleep 0.01; done
}
in_ns() { nsenter -t "$NS" -U -n --preserve-credentials -- "$@"; }
wait_ready() {
  local i
  for ((i = 0; i < 500; i++)); do
    [[ -s $1 ]] && return 0
    sleep 0.01
  done
  return 1
}

# start_stack ENGINE: the stack for namespace $NS; sets STACK (its pid, for CPU accounting).
start_stack() {
  rm -f "$WORK/ready" "$WORK/slirp.sock"
  case $1 in
  burrow)
    "$BURROW" __netstack --netns-pid "$NS" --ready-fd 3 --config "{\"slirp\":{\"allow_host_loopback\":true},\"dns_servers\":[],\"port_forwards\":[{\"host_ip\":\"127.0.0.1\",\"host_port\":$HPORT,\"container_port\":$SPORT}]}" 3>"$WORK/ready" &
    STACK=$!
    wait_ready "$WORK/ready"
    ;;
  slirp4netns)
    slirp4netns --configure --mtu=65520 --ready-fd 3 --api-socket "$WORK/slirp.sock" "$NS" tap0 3>"$WORK/ready" >/dev/null 2>&1 &
    STACK=$!
    wait_ready "$WORK/ready"
    printf "{\"execute\":\"add_hostfwd\",\"arguments\":{\"proto\":\"tcp\",\"host_addr\":\"127.0.0.1\",\"host_port\":$HPORT,\"guest_port\":$SPORT}}" |
      socat - "UNIX-CONNECT:$WORK/slirp.sock" >/dev/null
    ;;
  esac
}

# iperf RESULT_FILE CMD...: runs an iperf3 client with -J; prints "GBITS BYTES" or nothing.
iperf() {
  local out=$1
  shift
  if "$@" -J >"$out" 2>/dev/null; then
    jq -r "[.end.sum_received.bits_per_second / 1e9, .end.sum_received.bytes] | @tsv" "$out"
  fi
}

# row ENGINE DIRECTION STACK_PID CMD...: one run; prints its result line.
row() {
  local engine=$1 dir=$2 pid=$3 i before after res gb bytes all="" ticks=0 total=0
  shift 3
  for ((i = 0; i < 1; i++)); do
    before=$(cpu_ticks "$pid")
    res=$(iperf "$WORK/iperf.json" "$@" || true)
    after=$(cpu_ticks "$pid")
    [[ -n $res ]] || continue
    read -r gb bytes <<<"$res"
    all+=" $(printf %.1f "$gb")"
    ticks=$((ticks + after - before))
    total=$((total + ${bytes%.*}))
  done
  if [[ -z $all ]]; then
    printf "%s\t%s\tFAILED\t\t\n" "$engine" "$dir"
    return
  fi
  local med cpu="-"
  med=$(tr " " "\n" <<<"$all" | grep . | median)
  if [[ -n $pid && $total -gt 0 ]]; then
    cpu=$(awk -v t="$ticks" -v hz="$TCK" -v b="$total" "BEGIN { printf \"%.2f\", t / hz / (b / 1e9) }")
  fi
  printf "%s\t%s\t%s\t%s\t%s\n" "$engine" "$dir" "$med" "${all# }" "$cpu"
}

# rr_row ENGINE STACK_PID CMD...: one sockperf ping-pong run (CMD is the client); prints the
# result line: thousands of transactions/s, and CPU microseconds of the stack per transaction.
rr_row() {
  local engine=$1 pid=$2 i before after out secs n all="" ticks=0 total=0
  shift 2
  for ((i = 0; i < 1; i++)); do
    before=$(cpu_ticks "$pid")
    out=$("$@" 2>&1 || true)
    after=$(cpu_ticks "$pid")
    secs=$(sed -nE "s/.*RunTime=([0-9.]+) sec.*/\1/p" <<<"$out" | head -n 1)
    n=$(sed -nE "s/.*ReceivedMessages=([0-9]+).*/\1/p" <<<"$out" | head -n 1)
    [[ -n $secs && -n $n && $n -gt 0 ]] || continue
    all+=" $(awk -v n="$n" -v s="$secs" "BEGIN { printf \"%.1f\", n / s / 1000 }")"
    ticks=$((ticks + after - before))
    total=$((total + n))
  done
  if [[ -z $all ]]; then
    printf "%s\t%s\tFAILED\t\t\n" "$engine" "rr k/s"
    return
  fi
  local med cpu="-"
  med=$(tr " " "\n" <<<"$all" | grep . | median)
  if [[ -n $pid && $total -gt 0 ]]; then
    cpu=$(awk -v t="$ticks" -v hz="$TCK" -v n="$total" "BEGIN { printf \"%.1fus\", t / hz / n * 1e6 }")
  fi
  printf "%s\t%s\t%s\t%s\t%s\n" "$engine" "rr k/s" "$med" "${all# }" "$cpu"
}

# Rounds: every engine once per round, so that a slow spell of the (shared, virtual) machine
# falls on all engines alike rather than on whichever ran then.
for ((round = 0; round < RUNS; round++)); do
for engine in $ENGINES; do
  case $engine in
  burrow | slirp4netns)
    log "$engine"
    start_ns
    start_stack "$engine"
    iperf3 -s -B 127.0.0.1 -p $SPORT >/dev/null 2>&1 &
    SERVER=$!
    sleep 0.2
    row "$engine" "ctr->host" "$STACK" in_ns iperf3 -c 10.0.2.2 -p $SPORT -t "$T"
    row "$engine" "host->ctr" "$STACK" in_ns iperf3 -c 10.0.2.2 -p $SPORT -t "$T" -R
    kill $SERVER
    sockperf sr --tcp -i 127.0.0.1 -p $RRPORT >/dev/null 2>&1 &
    SERVER=$!
    sleep 0.2
    rr_row "$engine" "$STACK" in_ns sockperf pp --tcp -i 10.0.2.2 -p $RRPORT -t "$T"
    kill $SERVER
    # Not through the in_ns function: in the background that is a subshell, and killing it
    # would leave the server running.
    nsenter -t "$NS" -U -n --preserve-credentials -- iperf3 -s -p $SPORT >/dev/null 2>&1 &
    SERVER=$!
    sleep 0.2
    row "$engine" "published" "$STACK" iperf3 -c 127.0.0.1 -p $HPORT -t "$T"
    kill $SERVER $STACK $NS 2>/dev/null || true
    wait 2>/dev/null || true
    ;;
  pasta)
    command -v pasta >/dev/null || continue
    log "pasta"
    # pasta makes its own namespace: -T splices the namespace loopback port to the host, -t publishes
    # (both its spliced loopback paths: no tap, unlike burrow and slirp4netns).
    iperf3 -s -B 127.0.0.1 -p $SPORT >/dev/null 2>&1 &
    SERVER=$!
    sleep 0.2
    row pasta "ctr->host" "" pasta --config-net -T $SPORT -- iperf3 -c 127.0.0.1 -p $SPORT -t "$T"
    row pasta "host->ctr" "" pasta --config-net -T $SPORT -- iperf3 -c 127.0.0.1 -p $SPORT -t "$T" -R
    kill $SERVER
    sockperf sr --tcp -i 127.0.0.1 -p $RRPORT >/dev/null 2>&1 &
    SERVER=$!
    sleep 0.2
    rr_row pasta "" pasta --config-net -T $RRPORT -- sockperf pp --tcp -i 127.0.0.1 -p $RRPORT -t "$T"
    kill $SERVER
    # Published: pasta forwards host port HPORT to the server in its namespace (-t).
    pasta --config-net -t $HPORT:$SPORT -- iperf3 -s -1 -p $SPORT >/dev/null 2>&1 &
    SERVER=$!
    sleep 0.5
    row pasta "published" "" iperf3 -c 127.0.0.1 -p $HPORT -t "$T"
    kill $SERVER 2>/dev/null || true
    wait 2>/dev/null || true
    ;;
  pasta-tap)
    command -v pasta >/dev/null || continue
    log "pasta-tap"
    # pasta through its tap, as burrow and slirp4netns are measured: the container dials the
    # gateway (slirp4netns addresses), which pasta maps to the host loopback. Its published
    # port from a loopback client is always spliced (the pasta row), so there is none here.
    PASTA_TAP="pasta --config-net -a 10.0.2.100 -n 24 -g 10.0.2.2 --"
    iperf3 -s -B 127.0.0.1 -p $SPORT >/dev/null 2>&1 &
    SERVER=$!
    sleep 0.2
    row pasta-tap "ctr->host" "" $PASTA_TAP iperf3 -c 10.0.2.2 -p $SPORT -t "$T"
    row pasta-tap "host->ctr" "" $PASTA_TAP iperf3 -c 10.0.2.2 -p $SPORT -t "$T" -R
    kill $SERVER
    sockperf sr --tcp -i 127.0.0.1 -p $RRPORT >/dev/null 2>&1 &
    SERVER=$!
    sleep 0.2
    rr_row pasta-tap "" $PASTA_TAP sockperf pp --tcp -i 10.0.2.2 -p $RRPORT -t "$T"
    kill $SERVER
    wait 2>/dev/null || true
    ;;
  esac
done
done
'

report() {
  awk -F'\t' -v runs="$RUNS" -v t="$T" '
    BEGIN {
      printf "iperf3 TCP, Gbit/s (median of %d runs of %d s); CPU = seconds of the stack process per GB\n", runs, t
      printf "rr k/s: sockperf TCP ping-pong ctr->host, thousands of transactions/s; CPU = stack µs per transaction\n"
      printf "| %-12s | %-10s | %7s | %-20s | %8s |\n", "engine", "direction", "median", "runs", "CPU s/GB"
      printf "|--------------|------------|---------|----------------------|----------|\n"
    }
    # One line per engine, direction and round: gather the rounds (in the order first seen).
    !(($1, $2) in seen) { seen[$1, $2] = 1; order[++n] = $1 SUBSEP $2 }
    $3 != "FAILED" { vals[$1, $2] = vals[$1, $2] " " $3; k[$1, $2]++ }
    $5 ~ /^[0-9.]+(us)?$/ { unit[$1, $2] = ($5 ~ /us$/) ? "us" : ""; v = $5; sub(/us$/, "", v); cpu[$1, $2] += v; nc[$1, $2]++ }
    END {
      for (i = 1; i <= n; i++) {
        key = order[i]; split(key, parts, SUBSEP)
        m = split(substr(vals[key], 2), a, " ")
        for (x = 1; x <= m; x++) for (y = x + 1; y <= m; y++) if (a[y] + 0 < a[x] + 0) { t = a[x]; a[x] = a[y]; a[y] = t }
        med = m == 0 ? "FAILED" : (m % 2 ? a[(m + 1) / 2] : sprintf("%.1f", (a[m / 2] + a[m / 2 + 1]) / 2))
        c = nc[key] ? sprintf(unit[key] == "us" ? "%.1fus" : "%.2f", cpu[key] / nc[key]) : "-"
        printf "| %-12s | %-10s | %7s | %-20s | %8s |\n", parts[1], parts[2], med, substr(vals[key], 2), c
      }
      print ""
      print "Reference (shared/bench/BASELINE.md, same VM type): host loopback 22.8; slirp4netns ctr->host 4.4,"
      print "host->ctr 5.4, published 6.2 (port_handler=slirp4netns); rootlessport 11.6; pasta 17.6."
    }' "$1"
}

main() {
  require_root
  ensure_packages "${BENCH_PACKAGES[@]}"
  ensure_user "$BENCH_USER" range
  ensure_devices
  WORK=$(mktemp -d /tmp/bn.XXXX) # short: the slirp4netns API socket lives below it
  if [[ -z ${BURROW:-} ]]; then
    ensure_cargo
    log "building burrow (release)"
    (cd "$ROOT" && cargo build --release --locked --bin burrow)
    BURROW=$ROOT/target/release/burrow
  fi
  install -m 0755 "$BURROW" "$WORK/burrow"
  chown "$BENCH_USER" "$WORK"
  chmod 0700 "$WORK"
  log "benchmarking as $BENCH_USER in $WORK"
  run_as_user "$BENCH_USER" BURROW="$WORK/burrow" WORK="$WORK" RUNS="$RUNS" T="$T" ENGINES="$ENGINES" \
    bash -c "$INNER" >"$WORK/results.tsv"
  report "$WORK/results.tsv"
}

main "$@"
