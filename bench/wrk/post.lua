-- POST one JSON body on every request; print the results as one JSON line in done().
-- Usage: wrk -t2 -c32 -d10s -s bench/wrk/post.lua http://127.0.0.1:PORT/path -- BODY_FILE
-- (or BENCH_BODY=BODY_FILE in the environment). Latencies are in microseconds.

local function read_body(path)
  local file = assert(io.open(path, "rb"), "cannot open body file " .. tostring(path))
  local body = file:read("*a")
  file:close()
  return body
end

-- Runs in each thread before its request is formatted (wrk.init calls it, then wrk.format()).
function init(args)
  local path = args[1] or os.getenv("BENCH_BODY")
  wrk.method = "POST"
  wrk.body = read_body(path)
  wrk.headers["Content-Type"] = "application/json"
end

function done(summary, latency, requests)
  local e = summary.errors
  local p = {}
  for _, q in ipairs({50, 75, 90, 99, 99.9}) do
    p[#p + 1] = latency:percentile(q)
  end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"max":%d,"mean":%.3f,"stdev":%.3f,' ..
    '"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev,
    p[1], p[2], p[3], p[4], p[5]))
end
