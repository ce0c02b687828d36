-- wrk script of the cibaproxy benchmark (bench/run.sh). Configured by the
-- environment, so the same script drives the reference and cibaproxy:
--
--   BENCH_PATH   request path (/token or /bc-authorize)
--   BENCH_AUTH   base64 of client_id:secret, sent as HTTP Basic
--   BENCH_BODY   a fixed form body (scenarios 1 and 3), or
--   BENCH_IDS    a file of auth_req_ids, one per line: each thread polls its
--                own part of them round-robin (scenario 2, the sweep);
--                BENCH_THREADS is wrk's -t, to split the file
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

  -- Each thread (of BENCH_THREADS, wrk's -t) polls its own share of the
  -- ids round-robin: thread k the k-th part of the file, so that they do
  -- not poll the same ids at the same moment. A thread reads only its part,
  -- in one piece, and builds each request when it sends it, from a fixed
  -- head (the ids have one length, so the Content-Length is the same) and
  -- the id: init stays a few milliseconds at any count. That matters: wrk
  -- runs the threads' inits one after the other in its main thread, thread
  -- 0 polls while thread 1's init runs, and wrk's clock starts after the
  -- last init; formatting every request in advance, as this script did
  -- until 2026-12-07, took seconds at 1 000 000 ids and inflated req/s
  -- several times. A file whose ids differ in length still gets each
  -- thread's requests formatted in advance.
  local data, width, head, reqs, n, i
  function init(args)
    local threads = tonumber(os.getenv("BENCH_THREADS") or "2")
    local t = tid or 0
    local f = assert(io.open(ids_file, "rb"))
    local first = f:read("*l") or ""
    local size = f:seek("end")
    if #first > 0 and size % (#first + 1) == 0 then
      width = #first + 1
      local total = size / width
      local lo, hi = math.floor(t * total / threads), math.floor((t + 1) * total / threads)
      if hi == lo then lo, hi = 0, total end -- fewer ids than threads
      f:seek("set", lo * width)
      data = f:read((hi - lo) * width)
      n = hi - lo
      for k = width, #data, width do
        if data:byte(k) ~= 10 then width = nil break end
      end
    end
    if width then
      local req = wrk.format(nil, path, nil, poll_prefix .. first)
      head = req:sub(1, #req - #first)
    else
      local ids = {}
      f:seek("set", 0)
      for id in f:lines() do
        if id ~= "" then ids[#ids + 1] = id end
      end
      local lo, hi = math.floor(t * #ids / threads), math.floor((t + 1) * #ids / threads)
      if hi == lo then lo, hi = 0, #ids end
      reqs = {}
      for k = lo + 1, hi do
        reqs[#reqs + 1] = wrk.format(nil, path, nil, poll_prefix .. ids[k])
      end
      n = #reqs
      data = nil
    end
    f:close()
    i = 0
  end

  function request()
    i = i + 1
    if i > n then i = 1 end
    if reqs then return reqs[i] end
    local at = (i - 1) * width
    return head .. data:sub(at + 1, at + width - 1)
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
