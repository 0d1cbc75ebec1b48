-- wrk script for scripts/bench.sh: POSTs one JSON body to one path and, when
-- done, prints one machine-readable line the harness parses.
--   BENCH_PATH       request path, e.g. /create
--   BENCH_BODY_FILE  file holding the request body
local path = os.getenv("BENCH_PATH") or "/"
local body_file = os.getenv("BENCH_BODY_FILE")
local body = ""
if body_file then
  local f = assert(io.open(body_file, "rb"))
  body = f:read("*a")
  f:close()
end

wrk.method = "POST"
wrk.path = path
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  -- Latencies are in microseconds. errors.status counts responses with a
  -- status >= 400 (wrk's own "Non-2xx or 3xx" line counts the same thing).
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d timeout=%d status=%d " ..
    "p50=%d p90=%d p99=%d p999=%d max=%d mean=%.1f\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
