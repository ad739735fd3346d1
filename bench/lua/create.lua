-- Link creation: POST /api/v1/links with a URL no other request of this run uses.
-- args: [1] a tag unique to this run (keeps URLs unique across runs and threads); [2] the API key
local counter = 0
local prefix
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  prefix = '{"url":"https://www.example.com/articles/2026/11/created-' .. args[1] .. '-'
  headers["Authorization"] = "Bearer " .. args[2]
end

function request()
  counter = counter + 1
  local body = prefix .. string.format("%07d", counter) .. '?ref=newsletter"}'
  return wrk.format("POST", "/api/v1/links", headers, body)
end
