-- One hot code: every request asks for the same path.
-- args: [1] the code (the path is "/" .. code); [2] optional: a User-Agent to send
local req

function init(args)
  local headers = {}
  if args[2] ~= nil and args[2] ~= "" then headers["User-Agent"] = args[2] end
  req = wrk.format("GET", "/" .. args[1], headers)
end

function request()
  return req
end
