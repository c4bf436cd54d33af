-- wrk script of bench/caching.py: one V2 inference request per call. With BENCH_VARY=1 each
-- request's body has the text __N__ replaced by a number no other request of the run (nor of
-- another run: BENCH_SEED) uses, so that each is a cache miss; otherwise the same body, so
-- that all but the first are hits.
--   BENCH_PATH, BENCH_BODY   the route and the file holding the JSON body
local file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
local path = os.getenv("BENCH_PATH")
local body = file:read("*a")
file:close()
local vary = os.getenv("BENCH_VARY") == "1"
local counter = tonumber(os.getenv("BENCH_SEED") or "0")
local headers = {["Content-Type"] = "application/json"}

function request()
  if vary then
    counter = counter + 1
    return wrk.format("POST", path, headers, (body:gsub("__N__", tostring(counter))))
  end
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
