#!/usr/bin/env bash
# A first look at serval's speed on the bundled examples: start-up time to ready, RSS, and
# requests/s of one-row JSON inference with wrk (Debian package `wrk`).
# Usage: bash bench/first_look.sh [connections] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-16}
seconds=${2:-10}
port=$(python -c 'from serval.testing import free_port; print(free_port())')
start=$(date +%s.%N)
serval serve examples/models --http-port "$port" --grpc-port 0 --log-level warning &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
until curl -sf "http://127.0.0.1:$port/v2/health/ready" >/dev/null; do sleep 0.01; done
ready=$(date +%s.%N)
echo "start-up to ready: $(python -c "print(f'{$ready - $start:.2f}')") s"
echo "RSS after start: $(( $(awk '/VmRSS/ {print $2}' /proc/$pid/status) / 1024 )) MiB"
wrk -t1 -c1 -d2s -s bench/infer_classifier.lua "http://127.0.0.1:$port" >/dev/null  # warm
echo "--- 1 connection"
wrk -t1 -c1 -d"${seconds}s" --latency -s bench/infer_classifier.lua "http://127.0.0.1:$port" \
  | grep -E "Requests/sec|50%|99%|Non-2xx"
echo "--- $connections connections"
wrk -t1 -c"$connections" -d"${seconds}s" --latency -s bench/infer_classifier.lua \
  "http://127.0.0.1:$port" | grep -E "Requests/sec|50%|99%|Non-2xx"
echo "RSS after load: $(( $(awk '/VmRSS/ {print $2}' /proc/$pid/status) / 1024 )) MiB"
