-- POST /v1/tokens with a new random PAN every time.
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
  return wrk.format("POST", "/v1/tokens", nil, '{"value":"' .. common.luhn_pan("4", 16) .. '"}')
end
