-- wrk script of the cibaproxy benchmark (bench/run.sh). Configured by the
-- environment, so the same script drives the reference and cibaproxy:
--
--   BENCH_PATH   request path (/token or /bc-authorize)
--   BENCH_AUTH   base64 of client_id:secret, sent as HTTP Basic
--   BENCH_BODY   a fixed form body (scenarios 1 and 3), or
--   BENCH_IDS    a file of auth_req_ids, one per line: each thread polls them
--                round-robin, starting at its own offset (scenario 2);
--                BENCH_THREADS is wrk's -t, to space those offsets
--
-- At the end it prints one machine-readable line:
--   BENCH rps=… p50_us=… p90_us=… p99_us=… max_us=… requests=… non2xx=… errors=…
local path = os.getenv("BENCH_PATH") or "/token"
local ids_file = os.getenv("BENCH_IDS")
local poll_prefix = "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id="

wrk.method = "POST"
wrk.path = path
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. (os.getenv("BENCH_AUTH") or "")

if ids_file == nil or ids_file == "" then
  -- Static request: wrk builds it once and resends the same bytes.
  wrk.body = os.getenv("BENCH_BODY") or ""
else
  local nthreads = 0
  function setup(thread)
    thread:set("tid", nthreads)
    nthreads = nthreads + 1
  end

  local reqs, n, i
  function init(args)
    reqs = {}
    for id in io.lines(ids_file) do
      if id ~= "" then
        reqs[#reqs + 1] = wrk.format(nil, path, nil, poll_prefix .. id)
      end
    end
    n = #reqs
    -- Each of the BENCH_THREADS threads (wrk -t) starts in its own part of
    -- the file, so they do not poll the same ids at the same moment.
    local threads = tonumber(os.getenv("BENCH_THREADS") or "2")
    i = math.floor((tid or 0) * n / threads) % n
  end

  function request()
    i = i + 1
    if i > n then i = 1 end
    return reqs[i]
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "BENCH rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d requests=%d non2xx=%d errors=%d\n",
    summary.requests / secs, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, summary.requests, e.status, e.connect + e.read + e.write + e.timeout))
end
