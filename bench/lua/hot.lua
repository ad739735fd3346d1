-- One hot code: every request asks for the same path.
-- args: [1] the code (the path is "/" .. code)
local req

function init(args)
  req = wrk.format("GET", "/" .. args[1])
end

function request()
  return req
end
