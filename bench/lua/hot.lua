-- One hot code: every request asks for the same path.
-- args: [1] the code (the path is "/" .. code); [2] optional: a User-Agent to send
local req

function init(args)
  -- BENCH_PAUSE_MS (the bench's paced runs): each connection waits that long between requests on
  -- average, drawn from 0.5-1.5 times it so the connections do not fire in step (64 requests
  -- landing at once would measure a burst, not the load)
  local pause = tonumber(os.getenv("BENCH_PAUSE_MS") or "") or 0
  if pause > 0 then
    math.randomseed(os.time() + math.floor(os.clock() * 1000000))
    delay = function() return math.floor(pause * (0.5 + math.random()) + 0.5) end
  end
  local headers = {}
  if args[2] ~= nil and args[2] ~= "" then headers["User-Agent"] = args[2] end
  req = wrk.format("GET", "/" .. args[1], headers)
end

function request()
  return req
end
