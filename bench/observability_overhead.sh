#!/usr/bin/env bash
# What metrics and logging cost at default settings: one-row V2 JSON inference on the bundled
# `classifier` (overhead-bound: the model itself takes about 10 µs) against a server with the
# defaults (metrics on, access log off, tracing off) and one with `--no-metrics`, in one run.
#
# Both servers run side by side, each idle while the other is measured; wrk alternates
# between them for ROUNDS rounds, each round in a rotated order, so that drift on a noisy
# machine and the position in a round hit both alike. Reported per
# server: requests/s (mean and median of the rounds) and the server's CPU time per request
# (from /proc/PID/stat), the steadier number on a shared machine: an overhead-bound server's
# throughput is the inverse of its CPU time per request.
#
# PIN=1 pins the servers to CPU 0 and wrk to CPU 1. BASELINE_REF=<git ref> adds a third server
# running that commit's code (exported with `git archive`; the working tree is untouched).
#
# Usage: [PIN=1] [BASELINE_REF=ref] bash bench/observability_overhead.sh [connections] [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-16}
seconds=${2:-10}
rounds=${3:-5}
lua=bench/infer_classifier.lua
server_cpus="" wrk_cpus=""
if [[ "${PIN:-0}" == 1 ]]; then server_cpus="taskset -c 0" wrk_cpus="taskset -c 1"; fi
pids=()
tmp=$(mktemp -d)
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

declare -A ports server_pids
start() {  # start NAME PYTHONPATH [ARGS...]: start a server and wait until it is ready
  local name=$1 pythonpath=$2 port
  shift 2
  port=$(python -c 'from serval.testing import free_port; print(free_port())')
  PYTHONPATH=$pythonpath $server_cpus python -m serval serve examples/models \
    --http-port "$port" --grpc-port 0 "$@" >"$tmp/$name.log" 2>&1 &
  pids+=($!)
  server_pids[$name]=$!
  ports[$name]=$port
  until curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null; do sleep 0.05; done
}

start on ""
start off "" --no-metrics
names=(on off)
if [[ -n "${BASELINE_REF:-}" ]]; then
  mkdir -p "$tmp/baseline"
  git archive "$BASELINE_REF" src | tar -x -C "$tmp/baseline"
  start baseline "$tmp/baseline/src"
  names+=(baseline)
fi

# user + system CPU time in clock ticks: of the process, and of its main thread (the event
# loop, where decoding, encoding, metrics and logging run: the bottleneck of a small model).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" "/proc/$1/task/$1/stat" | paste -sd' '; }

measure() {  # measure NAME DURATION: "NAME requests/s requests process-ticks loop-ticks"
  local name=$1 before after out
  read -r -a before <<<"$(cpu_ticks "${server_pids[$name]}")"
  out=$($wrk_cpus wrk -t1 -c"$connections" -d"$2" -s "$lua" "http://127.0.0.1:${ports[$name]}")
  read -r -a after <<<"$(cpu_ticks "${server_pids[$name]}")"
  if grep -q Non-2xx <<<"$out"; then echo "$name: non-2xx responses" >&2; exit 1; fi
  echo "$name $(awk '/Requests\/sec/ {print $2}' <<<"$out") \
$(awk '/requests in/ {print $1}' <<<"$out") $((after[0] - before[0])) $((after[1] - before[1]))"
}

for name in "${names[@]}"; do measure "$name" 2s >/dev/null; done  # warm up
for round in $(seq 0 $((rounds - 1))); do  # rotate the order: each server goes first in turn
  for i in "${!names[@]}"; do
    measure "${names[$(((i + round) % ${#names[@]}))]}" "${seconds}s"
  done | tee -a "$tmp/results"
done

TICKS=$(getconf CLK_TCK) python - "$tmp/results" "${BASELINE_REF:-}" <<'EOF'
import os, statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
ticks = int(os.environ["TICKS"])
summary = {}
for name in dict.fromkeys(row[0] for row in rows):
    mine = [row for row in rows if row[0] == name]
    rps = [float(row[1]) for row in mine]
    requests = sum(int(r[2]) for r in mine)
    cpu_us = 1e6 * sum(int(r[3]) for r in mine) / ticks / requests
    loop_us = 1e6 * sum(int(r[4]) for r in mine) / ticks / requests
    summary[name] = (statistics.mean(rps), statistics.median(rps), cpu_us, loop_us)
    print(f"{name:9} mean {summary[name][0]:7.0f} req/s  median {summary[name][1]:7.0f} req/s"
          f"  CPU {cpu_us:6.1f} µs/request, event loop thread {loop_us:6.1f} µs/request")
def compare(a, b, label):
    (ma, da, ca, la), (mb, db, cb, lb) = summary[a], summary[b]
    print(f"{label}: throughput {100 * (ma - mb) / mb:+.1f}% (mean), {100 * (da - db) / db:+.1f}%"
          f" (median); CPU per request {100 * (ca - cb) / cb:+.1f}%, event loop thread "
          f"{100 * (la - lb) / lb:+.1f}% ({la - lb:+.1f} µs)")
compare("on", "off", "metrics on vs off")
if sys.argv[2]:
    compare("on", "baseline", f"defaults vs {sys.argv[2]}")
EOF
# The server with metrics counted every request it answered.
curl -s "http://127.0.0.1:${ports[on]}/metrics" | grep '^serval_requests_total' || true
