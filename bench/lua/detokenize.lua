-- POST /v1/detokenize of one token under one long-lived any_token grant.
package.path = "bench/lua/?.lua;" .. package.path
local common = require("common")
setup = common.setup
done = common.done
response = common.response

function init(args)
  common.init()
  common.headers(os.getenv("DETOKENIZER_KEY"))
  wrk.headers["X-Access-Grant"] = os.getenv("GRANT")
end

function request()
  return wrk.format("POST", "/v1/detokenize", nil, '{"tokens":["' .. os.getenv("TOKEN") .. '"]}')
end
