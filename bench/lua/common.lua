-- Shared by every scenario: the caller's key, JSON bodies, random Luhn-valid PANs, and a count
-- of non-2xx answers per thread (a run with any is reported as invalid by bench/run.sh).
local common = {}

function common.luhn_pan(prefix, len)
  local digits = {}
  for i = 1, #prefix do digits[i] = tonumber(prefix:sub(i, i)) end
  for i = #prefix + 1, len - 1 do digits[i] = math.random(0, 9) end
  -- Check digit: double every second digit from the right, counting the check digit as first.
  local sum = 0
  for i = len - 1, 1, -1 do
    local d = digits[i]
    if (len - i) % 2 == 1 then
      d = d * 2
      if d > 9 then d = d - 9 end
    end
    sum = sum + d
  end
  digits[len] = (10 - sum % 10) % 10
  return table.concat(digits)
end

function common.headers(key)
  wrk.headers["Authorization"] = "Bearer " .. key
  wrk.headers["Content-Type"] = "application/json"
end

local threads = {}
local counter = 0

function common.setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

function common.init()
  math.randomseed(os.time() * 1000 + id * 7919 + math.floor(os.clock() * 1000000))
  errors = 0
end

function common.response(status)
  if status >= 300 then errors = errors + 1 end
end

function common.done()
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("errors") end
  io.write(string.format("LUA_ERRORS %d\n", total))
end

return common
