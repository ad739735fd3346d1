-- Codes drawn uniformly at random (with replacement) from a file, one code a line.
-- args: [1] the file; [2] a suffix for every path ("" or "?utm_source=..."); [3] a random seed
-- done() prints "bench-distinct-paths: N": how many distinct paths were sent,
-- which the unknown-code workload compares with the service's Redis misses
-- (exact with one wrk thread; with more, a path two threads sent counts twice).
local paths, n = {}, 0
local seen = {}
distinct = 0 -- global: done() reads it through thread:get

function init(args)
  -- BENCH_PAUSE_MS (the bench's paced runs): each connection waits that long between requests on
  -- average, drawn from 0.5-1.5 times it so the connections do not fire in step (64 requests
  -- landing at once would measure a burst, not the load)
  local pause = tonumber(os.getenv("BENCH_PAUSE_MS") or "") or 0
  if pause > 0 then
    math.randomseed(os.time() + math.floor(os.clock() * 1000000))
    delay = function() return math.floor(pause * (0.5 + math.random()) + 0.5) end
  end
  local suffix = args[2] or ""
  for line in io.lines(args[1]) do
    if #line > 0 then
      n = n + 1
      paths[n] = "/" .. line .. suffix
    end
  end
  if n == 0 then
    error("no codes in " .. args[1])
  end
  math.randomseed(tonumber(args[3]) or os.time())
end

function request()
  local k = math.random(n)
  if not seen[k] then
    seen[k] = true
    distinct = distinct + 1
  end
  return wrk.format("GET", paths[k])
end

-- done() runs in wrk's main Lua state; the counters live in the threads' states.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + (thread:get("distinct") or 0)
  end
  io.write(string.format("bench-distinct-paths: %d\n", total))
end
