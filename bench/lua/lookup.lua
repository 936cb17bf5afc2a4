-- GET /v1/tokens/{token} of one token.
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
  return wrk.format("GET", "/v1/tokens/" .. os.getenv("TOKEN"), nil, nil)
end
