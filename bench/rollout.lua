-- wrk script of bench/rollout.py: one V2 inference request (as v2_infer.lua), each with its own
-- sticky user id in the x-user-id header (user-1, user-2, ... per connection thread), so that
-- a sticky traffic policy hashes a different key every request.
--   BENCH_PATH, BENCH_BODY   as in v2_infer.lua
local file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
local path = os.getenv("BENCH_PATH")
local body = file:read("*a")
file:close()
local counter = 0

function request()
  counter = counter + 1
  local headers = {["Content-Type"] = "application/json", ["x-user-id"] = "user-" .. counter}
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "non2xx": %d, "connect": %d, "read": %d, '
      .. '"write": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "mean_us": %.1f, '
      .. '"max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    latency.max))
end
