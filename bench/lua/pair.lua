-- A payment service's full pair: an auto-approved access request for the token, then the
-- detokenize under the grant it returned. One connection per thread (run with -t = -c), so
-- each thread alternates its own pair; bench/run.sh reports pairs per second.
package.path = "bench/lua/?.lua;" .. package.path
local common = require("common")
setup = common.setup
done = common.done

local grant = nil

function init(args)
  common.init()
  common.headers(os.getenv("DETOKENIZER_KEY"))
end

function request()
  if grant == nil then
    wrk.headers["X-Access-Grant"] = nil
    return wrk.format("POST", "/v1/access-requests", nil,
      '{"tokens":["' .. os.getenv("TOKEN") .. '"],"purpose":"payment_authorization",' ..
      '"reason":"bench","duration_seconds":60,"max_uses":1}')
  end
  wrk.headers["X-Access-Grant"] = grant
  grant = nil
  return wrk.format("POST", "/v1/detokenize", nil, '{"tokens":["' .. os.getenv("TOKEN") .. '"]}')
end

function response(status, headers, body)
  common.response(status)
  if status == 201 then
    grant = body:match('"grant":"([^"]+)"')
  end
end
