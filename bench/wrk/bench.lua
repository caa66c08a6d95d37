-- Load script of the benchmark harness (bench/cmd/benchrun); every wrk run
-- uses it, so the load generator does the same work in every configuration.
--
--   wrk -t 1 ... -s bench.lua -- METHOD PATH TOKENS BODY START
--
-- TOKENS is a file of bearer tokens, one a line, sent in turn starting at
-- line START+1 (modulo their number), or "-" for none. benchrun carries
-- START over from run to run, so a pool larger than the gateway's token
-- cache is walked in one cycle and never hits it. BODY is a file sent as
-- the JSON body, or "-" for none. Every request is formatted once, in
-- init; request() only picks the next one. done() prints the exact figures
-- on one line starting with "BENCH ", latencies in microseconds.

local requests = {}
local count = 0
local next_index = 0

local function read_file(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

function init(args)
  local method, path, tokens, body_file = args[1], args[2], args[3], args[4]
  local body = nil
  local headers = {}
  if body_file ~= nil and body_file ~= "-" then
    body = read_file(body_file)
    headers["Content-Type"] = "application/json"
  end

  if tokens == nil or tokens == "-" then
    count = 1
    requests[1] = wrk.format(method, path, headers, body)
  else
    for line in io.lines(tokens) do
      if line ~= "" then
        headers["Authorization"] = "Bearer " .. line
        count = count + 1
        requests[count] = wrk.format(method, path, headers, body)
      end
    end
  end
  assert(count > 0, "no tokens in " .. tostring(tokens))
  next_index = math.floor(tonumber(args[5] or "0")) % count
end

function request()
  next_index = next_index % count + 1
  return requests[next_index]
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "status_errors=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
