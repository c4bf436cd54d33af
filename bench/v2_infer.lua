-- wrk script of bench/run.py: one V2 inference request, sent over and over on every connection.
-- The request comes from the environment, so one script drives every server and encoding:
--   BENCH_PATH         URL path, e.g. /v2/models/tiny/infer
--   BENCH_BODY         file holding the request body (JSON, or the binary tensor extension's
--                      JSON header followed by the raw tensor bytes)
--   BENCH_HEADER_LEN   for a binary body: the JSON header's length in bytes, sent as
--                      Inference-Header-Content-Length (absent or empty: a JSON body)
-- At the end it prints one line "BENCH_RESULT {json}" with the counts and latency percentiles
-- (microseconds) that bench/run.py reads; wrk's own report is printed above it.
local file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH")
wrk.body = file:read("*a")
file:close()
local header_len = os.getenv("BENCH_HEADER_LEN")
if header_len ~= nil and header_len ~= "" then
  wrk.headers["Content-Type"] = "application/octet-stream"
  wrk.headers["Inference-Header-Content-Length"] = header_len
else
  wrk.headers["Content-Type"] = "application/json"
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
