-- POST /v1/tokens/batch with 100 new random PANs.
package.path = "bench/lua/?.lua;" .. package.path
local common = require("common")
setup = common.setup
done = common.done
response = common.response

function init(args)
  common.init()
  common.headers(os.getenv("TOKENIZER_KEY"))
end

function request()
  local items = {}
  for i = 1, 100 do items[i] = '{"value":"' .. common.luhn_pan("4", 16) .. '"}' end
  return wrk.format("POST", "/v1/tokens/batch", nil, '{"items":[' .. table.concat(items, ",") .. ']}')
end
