-- wrk script of bench/caching.py: one V2 inference request per call. With BENCH_VARY=1 each
-- request differs from every other of the run (and of other runs: BENCH_SEED), so that each
-- is a cache miss; otherwise the same body, so that all but the first are hits. A JSON body
-- has the text __N__ replaced by the request's number; a binary one (BENCH_HEADER_LEN set)
-- gets its first tensor value (4 bytes after the JSON header) made from that number.
--   BENCH_PATH, BENCH_BODY   the route and the file holding the body
--   BENCH_HEADER_LEN         a binary body's JSON header length (absent or empty: JSON)
local file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
local path = os.getenv("BENCH_PATH")
local body = file:read("*a")
file:close()
local vary = os.getenv("BENCH_VARY") == "1"
local counter = tonumber(os.getenv("BENCH_SEED") or "0")
local header_len = tonumber(os.getenv("BENCH_HEADER_LEN") or "")
local headers = {["Content-Type"] = "application/json"}
local head, tail
if header_len ~= nil then
  headers["Content-Type"] = "application/octet-stream"
  headers["Inference-Header-Content-Length"] = tostring(header_len)
  head, tail = body:sub(1, header_len), body:sub(header_len + 5)
end

local function value(n)
  -- A float32 in [0.5, 2): 24 bits of n in the mantissa, 0x3F as the high byte.
  return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 128, 0x3F)
end

function request()
  if not vary then
    return wrk.format("POST", path, headers, body)
  end
  counter = counter + 1
  if header_len ~= nil then
    return wrk.format("POST", path, headers, head .. value(counter) .. tail)
  end
  return wrk.format("POST", path, headers, (body:gsub("__N__", tostring(counter))))
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
