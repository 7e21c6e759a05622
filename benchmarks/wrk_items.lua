-- wrk script: GET <BENCH_PATH>/<item id>?<BENCH_QUERY> with item ids drawn at random from BENCH_IDS_FILE
-- (one id per line). With BENCH_INTERVAL_MS > 0 each wrk thread sends on a fixed schedule (one request
-- every BENCH_INTERVAL_MS ms per thread, slots reserved in advance, so a slow answer does not lower the
-- offered rate while another connection of the thread is free): a fixed-rate run.
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local ids = {}
local path = os.getenv("BENCH_PATH") or "/i2i"
local query = os.getenv("BENCH_QUERY") or ""
local interval = tonumber(os.getenv("BENCH_INTERVAL_MS") or "0")
local next_slot = nil

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 100000)
  for line in io.lines(os.getenv("BENCH_IDS_FILE")) do
    ids[#ids + 1] = line
  end
end

function request()
  local id = ids[math.random(1, #ids)]
  return wrk.format("GET", path .. "/" .. id .. "?" .. query)
end

function delay()
  if interval <= 0 then
    return 0
  end
  local t = now_ms()
  if next_slot == nil or next_slot < t - 1000 then
    next_slot = t
  end
  next_slot = next_slot + interval
  local d = next_slot - t
  if d < 0 then
    return 0
  end
  return d
end

function done(summary, latency, requests)
  io.write(string.format("BENCH errors=%d non2xx=%d\n",
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
