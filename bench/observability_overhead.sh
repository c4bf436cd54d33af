#!/usr/bin/env bash
# What metrics and logging cost at default settings: requests/s of one-row V2 JSON inference on
# the bundled `classifier` (an overhead-bound model: the model itself takes ~10 µs) with the
# defaults (metrics on, access log off, tracing off) against `--no-metrics`, in one run.
#
# Both servers run side by side (each idle while the other is measured); wrk alternates
# between them for ROUNDS rounds so that drift on a noisy machine hits both alike, and the
# script prints each round and the mean of each.
# Set BASELINE_REF=<git ref> to add a third server running that commit's code (from
# `git archive`, the working tree untouched), e.g. the commit before observability landed.
#
# Usage: [PIN=1] [BASELINE_REF=ref] bash bench/observability_overhead.sh [connections] [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-16}
seconds=${2:-10}
rounds=${3:-5}
lua=bench/infer_classifier.lua
# PIN=1: servers on CPU 0, wrk on CPU 1 (less noise on a 2-core machine).
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

free_port() { python -c 'from serval.testing import free_port; print(free_port())'; }

declare -A ports
start() {  # start NAME PYTHONPATH [ARGS...]: start a server, wait until it is ready
  local name=$1 pythonpath=$2 port
  shift 2
  port=$(free_port)
  PYTHONPATH=$pythonpath $server_cpus python -m serval serve examples/models \
    --http-port "$port" --grpc-port 0 "$@" >"$tmp/$name.log" 2>&1 &
  pids+=($!)
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

rps() {  # rps PORT DURATION
  $wrk_cpus wrk -t1 -c"$connections" -d"$2" -s "$lua" "http://127.0.0.1:$1" \
    | awk '/Requests\/sec/ {print $2} /Non-2xx/ {print "non-2xx responses" > "/dev/stderr"}'
}

for name in "${names[@]}"; do rps "${ports[$name]}" 2s >/dev/null; done  # warm up
declare -A total
for name in "${names[@]}"; do total[$name]=0; done
echo "round ${names[*]}"
for round in $(seq "$rounds"); do
  line="$round"
  for name in "${names[@]}"; do
    value=$(rps "${ports[$name]}" "${seconds}s")
    total[$name]=$(python -c "print(${total[$name]} + $value)")
    line="$line $value"
  done
  echo "$line"
done
for name in "${names[@]}"; do
  echo "mean $name: $(python -c "print(f'{${total[$name]} / $rounds:.0f}')") req/s"
done
python -c "
on, off = ${total[on]}, ${total[off]}
print(f'metrics on vs off: {100 * (on - off) / off:+.1f}% throughput')"
if [[ -n "${BASELINE_REF:-}" ]]; then
  python -c "
on, base = ${total[on]}, ${total[baseline]}
print(f'defaults vs $BASELINE_REF: {100 * (on - base) / base:+.1f}% throughput')"
fi
# The metrics server must have counted every request it answered.
curl -s "http://127.0.0.1:${ports[on]}/metrics" | grep '^serval_requests_total' || true
