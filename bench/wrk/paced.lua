-- bench.lua with a pause after each answer on every connection, for runs
-- below saturation:
--
--   wrk -t 1 ... -s paced.lua -- METHOD PATH TOKENS BODY START PAUSE_MS
--
-- Each connection waits PAUSE_MS after each answer before its next request,
-- so c connections offer about c / (PAUSE_MS + latency) requests per second.
-- This is closed-loop pacing (wrk 4 has no fixed-rate mode): a slow answer
-- delays the next request instead of queueing behind it.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "bench.lua")

local pause_ms = 0
local base_init = init

function init(args)
  base_init(args)
  pause_ms = tonumber(args[6] or "0")
end

function delay()
  return pause_ms
end
