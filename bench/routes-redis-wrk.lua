-- wrk script of bench/routes-redis.sh: one preview request per call, with a Host naming a
-- sandbox picked by MODE, and the run's summary as one "WRKJSON {...}" line (the fields of
-- bench/wrk_report.lua, plus "issued" and "wrapped").
--
--   wrk ... -s routes-redis-wrk.lua URL -- MODE PREFIX FIRST COUNT [MARKER]
--
-- MODE   fixed   always PREFIX-FIRST (the single-sandbox run; the same Lua work as "random")
--        random  PREFIX-<FIRST + random 0..COUNT-1> per request
--        seq     PREFIX-FIRST, PREFIX-FIRST+1, ... each id once; after COUNT ids the thread
--                stops (no request touches a sandbox twice, so every one is a first touch)
--        warm    like seq, but after COUNT ids it writes the file MARKER and goes on with
--                PREFIX-FIRST (already cached) until wrk is stopped
-- Each request is built with string.format: no wrk.format table work per request. Only
-- request() and done() are defined, so wrk still reads responses on its C path.
-- Every thread gets its own slice of [FIRST, FIRST+COUNT) in seq/warm modes.

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

local mode, prefix, first, count, marker
local next_id, last_id
issued, wrapped = 0, 0

local function build(n)
  return string.format("GET / HTTP/1.1\r\nHost: 8080-%s-%d.proxy.localhost\r\n\r\n", prefix, n)
end

function init(args)
  mode, prefix = args[1], args[2]
  first, count = tonumber(args[3]), tonumber(args[4])
  marker = args[5]
  local nthreads, me = tonumber(os.getenv("ROUTES_BENCH_THREADS") or "1"), id or 0
  local per = math.floor(count / nthreads)
  next_id = first + me * per
  last_id = (me == nthreads - 1) and (first + count - 1) or (next_id + per - 1)
  math.randomseed(os.time() + me * 7919)
end

local fixed_request

function request()
  if mode == "random" then
    issued = issued + 1
    return build(first + math.random(0, count - 1))
  end
  if mode == "fixed" then
    -- The same work as "random" (a random draw and a fresh string), for the same sandbox.
    issued = issued + 1
    return build(first + 0 * math.random(0, count - 1))
  end
  if next_id <= last_id then
    issued = issued + 1
    next_id = next_id + 1
    if next_id > last_id and mode == "warm" and marker then
      local f = io.open(marker .. "." .. (id or 0), "w")
      if f then f:write(issued, "\n"); f:close() end
    end
    return build(next_id - 1)
  end
  wrapped = wrapped + 1
  if mode == "seq" then
    wrk.thread:stop()
  end
  fixed_request = fixed_request or build(first)
  return fixed_request
end

function done(summary, latency, requests)
  local total_issued, total_wrapped = 0, 0
  for _, t in ipairs(threads) do
    total_issued = total_issued + (t:get("issued") or 0)
    total_wrapped = total_wrapped + (t:get("wrapped") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"status_errors":%d,"timeouts":%d,' ..
    '"latency_mean_us":%.1f,"latency_max_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"p999_us":%d,"issued":%d,"wrapped":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), total_issued, total_wrapped))
end
