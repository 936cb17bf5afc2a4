-- POST /v1/tokens with one of 1,000 PANs that are already tokenized (200, the same token).
package.path = "bench/lua/?.lua;" .. package.path
local common = require("common")
setup = common.setup
done = common.done
response = common.response

local known = {}

function init(args)
  common.init()
  common.headers(os.getenv("TOKENIZER_KEY"))
  -- The same 1,000 PANs in every thread and every run: a fixed seed.
  math.randomseed(424242)
  for i = 1, 1000 do known[i] = common.luhn_pan("5", 16) end
  common.init()
end

function request()
  return wrk.format("POST", "/v1/tokens", nil, '{"value":"' .. known[math.random(1, #known)] .. '"}')
end
