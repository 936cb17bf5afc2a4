#!/usr/bin/env bash
# An outsider's attack on the people's console and its sessions, against a release build's
# `strongroom dev` vault: sign-in refusals, cookie games, CSRF, roles and grants through the
# console's reveal, the console's headers and paths, races (sign-outs, reveals, sign-ins with
# one code), leaks into answers, headers and the vault's log, the audit trail, and the TOTP
# lockout (on a second dev vault, so that the first keeps its people usable).
#
# Failed authentications are throttled per source address (20 a minute), so each group of
# attacks that fails on purpose comes from a loopback address of its own (127.0.0.x).
# TOTP codes are computed from the demo secrets (RFC 6238, one step of skew): a code is good
# once, so a person's codes are spent step by step, waiting only when the window is used up.
#
#   bench/attack/console.sh        # BIN=/path/to/strongroom for another build; KEEP=1 keeps $W
set -u
. "$(dirname "$0")/lib.sh"   # check, note, finish, py, JSON, key, hdr, gone_within
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release/strongroom}
PORT=${PORT:-18790}
PORT2=${PORT2:-$((PORT + 1))}
URL=http://127.0.0.1:$PORT
URL2=http://127.0.0.1:$PORT2
W=$(mktemp -d /tmp/console-attack.XXXXXX)
D1=$(mktemp -d); D2=$(mktemp -d)
mkdir -p "$W/out"
V1=""; V2=""
cleanup() {
  for p in $V1 $V2; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  [ "${KEEP:-0}" = 1 ] && echo "kept $W $D1 $D2" || rm -rf "$W" "$D1" "$D2"
}
trap cleanup EXIT
T0=$(date +%s)

cat >"$W/h.py" <<'PY'
import base64, hashlib, hmac, http.client, json, random, struct, sys, threading

def totp(secret, step):
    s = secret.strip().upper()
    key = base64.b32decode(s + "=" * (-len(s) % 8))
    mac = hmac.new(key, struct.pack(">Q", int(step)), "sha1").digest()
    o = mac[-1] & 15
    print("%06d" % ((struct.unpack(">I", mac[o:o + 4])[0] & 0x7FFFFFFF) % 1000000))

def pan(seed):
    rng = random.Random(int(seed))
    body = "4" + "".join(str(rng.randrange(10)) for _ in range(14))
    s = 0
    for i, d in enumerate(reversed(body)):
        d = int(d)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        s += d
    print(body + str((10 - s % 10) % 10))

def sname(tok):
    """The public name of a session in the trail: the first 8 bytes of SHA-256 of its token."""
    print(hashlib.sha256(base64.urlsafe_b64decode(tok + "=")).hexdigest()[:16])

def flip(tok):
    """The same 256 bits, spelled with one of the last character's two padding bits set."""
    alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    print(tok[:-1] + alpha[alpha.index(tok[-1]) ^ 1])

def rand43():
    print(base64.urlsafe_b64encode(random.SystemRandom().randbytes(32)).decode().rstrip("="))

def par(n, method, port, path, headers, body, src, prefix):
    """N identical requests on N connections from SRC, released at once; prints the statuses
    in order and writes each answer to PREFIX<i>.headers/.body."""
    n, headers = int(n), json.loads(headers)
    barrier, out = threading.Barrier(n), [0] * n
    def go(i):
        c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=60, source_address=(src, 0))
        try:
            c.connect()
            barrier.wait()
            c.request(method, path, body=body.encode() if body else None, headers=headers)
            r = c.getresponse()
            raw = r.read()
            out[i] = r.status
            with open(f"{prefix}{i}.headers", "w") as f:
                f.write(f"HTTP/1.1 {r.status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in r.getheaders()))
            with open(f"{prefix}{i}.body", "wb") as f:
                f.write(raw)
        except Exception as e:  # noqa: BLE001
            print(f"request {i}: {e}", file=sys.stderr)
    ts = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in ts: t.start()
    for t in ts: t.join()
    print(" ".join(map(str, out)))

getattr(sys.modules[__name__], sys.argv[1])(*sys.argv[2:])
PY

# req NAME METHOD PATH [curl args]: from $SRC to $BASE (vault 1 unless set); status in $ST,
# body in $B, problem code in $CODE, response headers in $H; kept in $W/out/NAME.* (grepped).
SRC=127.0.0.1; BASE=$URL
req() {
  local name=$1 m=$2 p=$3; shift 3
  ST=$(curl -s --path-as-is --interface "$SRC" -o "$W/out/$name.body" -D "$W/out/$name.headers" \
    -w '%{http_code}' -X "$m" "$BASE$p" "$@")
  B=$(cat "$W/out/$name.body"); H=$(tr -d '\r' <"$W/out/$name.headers")
  CODE=$(jq -r '.code? // empty' <<<"$B" 2>/dev/null)
}
ck() { printf 'Cookie: strongroom_session=%s' "$1"; }
xs() { if [ -n "$1" ]; then printf 'X-CSRF-Token: %s' "$1"; else printf 'X-CSRF-Token;'; fi; }
setcookie() { sed -n 's/^[Ss]et-[Cc]ookie: strongroom_session=\([^;]*\);.*/\1/p' <<<"$H" | head -n1; }
cnt() { tr ' ' '\n' <<<"$2" | grep -cx "$1"; }

start_vault() { # DIR PORT LOG: a dev vault; its pid in $VP
  $BIN dev --listen "127.0.0.1:$2" --data-dir "$1" >"$3" 2>&1 &
  VP=$!
  for _ in $(seq 300); do
    curl -fs "http://127.0.0.1:$2/readyz" >/dev/null 2>&1 && grep -q 'Ctrl-C stops it' "$3" && return 0
    sleep 0.1
  done
  echo "dev did not start: $(tail -n5 "$3")"; return 1
}

declare -A SECRET KEYS LAST
load_people() { # DIR: API keys and TOTP secrets of the demo people
  local f=$1/dev-credentials.json p
  for p in checkout payments alice bob compliance ops; do
    KEYS[$p]=$(jq -r --arg n "$p" '.principals[] | select(.name == $n) | .key' "$f")
    SECRET[$p]=$(jq -r --arg n "$p" '.principals[] | select(.name == $n) | .totp_secret // empty' "$f")
  done
}
# next_code NAME: a code of NAME's for a step the vault has not seen yet, in $CODE_; waits
# only when the steps of the window (one either side of now) are all used.
next_code() {
  local p=$1 now left s
  now=$(( $(date +%s) / 30 )); left=$(( 30 - $(date +%s) % 30 ))
  s=$((now - 1)); [ "$left" -lt 6 ] && s=$now
  [ -n "${LAST[$p]:-}" ] && [ "${LAST[$p]}" -ge "$s" ] && s=$(( LAST[$p] + 1 ))
  local waited=$(date +%s)
  while [ $(( $(date +%s) / 30 )) -lt $((s - 1)) ]; do sleep 0.5; done
  [ $(( $(date +%s) - waited )) -gt 0 ] && note "waited $(( $(date +%s) - waited )) s for $p's next TOTP step"
  LAST[$p]=$s
  CODE_=$(py totp "${SECRET[$p]}" "$s")
}
# A six-digit code that is not NAME's for any step near now.
wrong_code() {
  local now=$(( $(date +%s) / 30 )) c i
  local near=" $(for i in -2 -1 0 1 2; do py totp "${SECRET[$1]}" $((now + i)); done | tr '\n' ' ')"
  while :; do c=$(printf '%06d' $(( (RANDOM * 32768 + RANDOM) % 1000000 ))); [[ $near != *" $c "* ]] && break; done
  echo "$c"
}
signin_body() { # KEY [CODE]
  if [ -n "${2:-}" ]; then jq -nc --arg k "$1" --arg t "$2" '{api_key: $k, totp: $t}'
  else jq -nc --arg k "$1" '{api_key: $k}'; fi
}
USED_CODES=()
ISO() { date -d "$1" +%s; }

# --- Setup -------------------------------------------------------------------------------
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release first"; exit 1; }
start_vault "$D1" "$PORT" "$W/vault1.log" || exit 1; V1=$VP
load_people "$D1"
echo "setup: dev vault on $URL ($D1)"
for i in 1 2 3; do PAN[$i]=$(py pan "$RANDOM$i"); done
printf '%s\n' "${PAN[@]}" >"$W/pans"
for i in 1 2 3; do
  req tokenize-$i POST /v1/tokens -H "$(key "${KEYS[checkout]}")" "${JSON[@]}" -d "{\"value\":\"${PAN[$i]}\"}"
  T[$i]=$(jq -r .token <<<"$B")
done
req pay-ask POST /v1/access-requests -H "$(key "${KEYS[payments]}")" "${JSON[@]}" \
  -d '{"any_token":true,"purpose":"payment_authorization","reason":"order 1001","duration_seconds":60,"max_uses":5}'
RP=$(jq -r .id <<<"$B")
[ -n "${T[3]}" ] && [ "${T[3]}" != null ] && [ "$ST" = 201 ] || { echo "setup failed: tokenize/ask $ST $B"; exit 1; }
DEVCODE=$($BIN totp code alice --data-dir "$D1" 2>/dev/null)
MYCODE=$(py totp "${SECRET[alice]}" $(( $(date +%s) / 30 )))
check "the TOTP codes computed here are totp code's ($DEVCODE)" '[ "$DEVCODE" = "$MYCODE" ] || [ "$(py totp "${SECRET[alice]}" $(( $(date +%s) / 30 - 1 )))" = "$DEVCODE" ]'
check "dev's banner names the console" 'grep -q "$URL/console" "$W/vault1.log"'

# --- 1. Sign-in refusals ---------------------------------------------------------------------
echo "== 1. sign-in refusals"
SRC=127.0.0.11
req si-unknown POST /v1/sessions "${JSON[@]}" -d "$(signin_body "sr_live_$(py rand43)")"
check "an unknown key: 401 unauthenticated" '[ "$ST" = 401 ] && [ "$CODE" = unauthenticated ]'
for p in checkout payments; do
  req si-$p POST /v1/sessions "${JSON[@]}" -d "$(signin_body "${KEYS[$p]}")"
  check "a service's key ($p): 403 forbidden, no cookie" '[ "$ST" = 403 ] && [ "$CODE" = forbidden ] && ! grep -qi "^set-cookie" <<<"$H"'
done
req si-alice-nocode POST /v1/sessions "${JSON[@]}" -d "$(signin_body "${KEYS[alice]}")"
check "alice without a code: 403 mfa_required, no cookie" '[ "$ST" = 403 ] && [ "$CODE" = mfa_required ] && ! grep -qi "^set-cookie" <<<"$H"'
WRONG=$(wrong_code alice); USED_CODES+=("$WRONG")
req si-alice-wrong POST /v1/sessions "${JSON[@]}" -d "$(signin_body "${KEYS[alice]}" "$WRONG")"
check "alice with a wrong code: 403 mfa_required" '[ "$ST" = 403 ] && [ "$CODE" = mfa_required ]'
WRONG_DETAIL=$(jq -r .detail <<<"$B")
req si-alice-5digits POST /v1/sessions "${JSON[@]}" -d "$(signin_body "${KEYS[alice]}" 12345)"
check "alice with a five-digit code: 403 mfa_required" '[ "$ST" = 403 ] && [ "$CODE" = mfa_required ]'
req si-totp-number POST /v1/sessions "${JSON[@]}" -d "{\"api_key\":\"${KEYS[alice]}\",\"totp\":123456}"
check "totp as a number: 422 invalid_field" '[ "$ST" = 422 ] && [ "$CODE" = invalid_field ]'
req si-key-number POST /v1/sessions "${JSON[@]}" -d '{"api_key":4111111111111111}'
check "api_key as a number: 422 invalid_field, not echoed" '[ "$ST" = 422 ] && [ "$CODE" = invalid_field ] && ! grep -q 4111111111111111 <<<"$B"'
req si-malformed POST /v1/sessions "${JSON[@]}" -d "{\"api_key\":\"${KEYS[alice]}\""
check "malformed JSON: 400 malformed_json" '[ "$ST" = 400 ] && [ "$CODE" = malformed_json ]'
req si-unknown-field POST /v1/sessions "${JSON[@]}" -d "{\"api_key\":\"${KEYS[compliance]}\",\"remember_me\":true}"
check "an unknown field (with a good key): 422 unknown_field, no session" '[ "$ST" = 422 ] && [ "$CODE" = unknown_field ] && ! grep -qi "^set-cookie" <<<"$H"'
req si-dup POST /v1/sessions "${JSON[@]}" -d "{\"api_key\":\"x\",\"api_key\":\"${KEYS[compliance]}\"}"
check "a duplicate api_key: 422 duplicate_field, no session" '[ "$ST" = 422 ] && [ "$CODE" = duplicate_field ] && ! grep -qi "^set-cookie" <<<"$H"'
req si-array POST /v1/sessions "${JSON[@]}" -d "[\"${KEYS[compliance]}\"]"
check "a JSON array of the fields: 422, no session" '[ "$ST" = 422 ] && ! grep -qi "^set-cookie" <<<"$H"'
head -c 4000000 /dev/zero | tr '\0' 'a' | sed 's/^/{"api_key":"/; s/$/"}/' >"$W/huge.json"
req si-huge POST /v1/sessions "${JSON[@]}" --data-binary @"$W/huge.json"
check "a 4 MB body: 413 payload_too_large" '[ "$ST" = 413 ] && [ "$CODE" = payload_too_large ]'
req si-huge-chunked POST /v1/sessions "${JSON[@]}" -H 'Transfer-Encoding: chunked' --data-binary @"$W/huge.json"
check "a 4 MB chunked body (no length declared): 413" '[ "$ST" = 413 ]'
req si-form POST /v1/sessions --data-urlencode "api_key=${KEYS[compliance]}"
check "a form-encoded body (as a cross-site form would post): 415, no session" '[ "$ST" = 415 ] && [ "$CODE" = unsupported_media_type ] && ! grep -qi "^set-cookie" <<<"$H"'
req si-text POST /v1/sessions -H 'Content-Type: text/plain' -d "$(signin_body "${KEYS[compliance]}")"
check "a text/plain JSON body (a CORS-simple request): 415, no session" '[ "$ST" = 415 ] && ! grep -qi "^set-cookie" <<<"$H"'
req si-get GET /v1/sessions
check "GET /v1/sessions: 405" '[ "$ST" = 405 ]'
req si-cors OPTIONS /v1/sessions -H 'Origin: https://evil.example' -H 'Access-Control-Request-Method: POST' -H 'Access-Control-Request-Headers: content-type'
check "a CORS preflight from another origin is granted nothing ($ST)" '! grep -qi "^access-control-allow" <<<"$H"'
req cur-none GET /v1/sessions/current
check "GET /v1/sessions/current with neither cookie nor key: 401" '[ "$ST" = 401 ]'
req cur-key GET /v1/sessions/current -H "$(key "${KEYS[ops]}")"
check "GET /v1/sessions/current with an API key: 404 (a key is no session)" '[ "$ST" = 404 ]'
req out-key DELETE /v1/sessions/current -H "$(key "${KEYS[ops]}")"
check "DELETE /v1/sessions/current with an API key: 404" '[ "$ST" = 404 ]'

# --- 2. Sign-ins ---------------------------------------------------------------------------
echo "== 2. sign-ins (one code, six at once)"
SRC=127.0.0.1
next_code alice; CA1=$CODE_; USED_CODES+=("$CA1")
H6=$(jq -nc '{"Content-Type":"application/json"}')
S=$(py par 6 POST "$PORT" /v1/sessions "$H6" "$(signin_body "${KEYS[alice]}" "$CA1")" 127.0.0.1 "$W/out/par-signin-")
check "6 sign-ins at once with alice's one code: exactly one 201, the rest 403 ($S)" '[ "$(cnt 201 "$S")" = 1 ] && [ "$(cnt 403 "$S")" = 5 ]'
WIN=$(grep -l '^HTTP/1.1 201' "$W"/out/par-signin-*.headers | head -n1)
H=$(tr -d '\r' <"$WIN"); B=$(cat "${WIN%.headers}.body")
SA=$(setcookie); XA=$(jq -r .csrf_token <<<"$B"); ALICE=$(jq -r .principal.id <<<"$B")
SC_LINE=$(grep -i '^set-cookie:' <<<"$H")
check "the cookie: strongroom_session=<43 base64url>; Path=/; Max-Age=28800; HttpOnly; SameSite=Strict" \
  '[[ $SC_LINE =~ ^[Ss]et-[Cc]ookie:\ strongroom_session=[A-Za-z0-9_-]{43}\;\ Path=/\;\ Max-Age=28800\;\ HttpOnly\;\ SameSite=Strict$ ]]'
NOW=$(date +%s)
check "the answer: alice, requester, a 43-char CSRF token, idle 900 s, 8 h absolute, no token or key in it" \
  '[ "$(jq -r ".principal.name + \" \" + (.principal.roles|join(\",\"))" <<<"$B")" = "alice requester" ] && [ ${#XA} = 43 ] && [ "$XA" != "$SA" ] && [ "$(jq -r .idle_timeout_seconds <<<"$B")" = 900 ] && d=$(( $(ISO "$(jq -r .expires_at <<<"$B")") - NOW )) && [ $d -ge 28790 ] && [ $d -le 28805 ] && d=$(( $(ISO "$(jq -r .idle_expires_at <<<"$B")") - NOW )) && [ $d -ge 890 ] && [ $d -le 905 ] && ! grep -qF -e "$SA" -e "${KEYS[alice]}" <<<"$B"'
check "the sign-in answer is no-store" 'grep -qi "^cache-control: no-store" <<<"$H"'
req si-replay POST /v1/sessions "${JSON[@]}" -d "$(signin_body "${KEYS[alice]}" "$CA1")"
check "the code just used, again: 403 mfa_required" '[ "$ST" = 403 ] && [ "$CODE" = mfa_required ]'
check "a replayed code reads exactly like a wrong one" '[ "$(jq -r .detail <<<"$B")" = "$WRONG_DETAIL" ]'
OLD=$(py totp "${SECRET[alice]}" $((LAST[alice] - 1)))
req si-older POST /v1/sessions "${JSON[@]}" -d "$(signin_body "${KEYS[alice]}" "$OLD")"
check "an older code (a step before the one used): 403 mfa_required" '[ "$ST" = 403 ] && [ "$CODE" = mfa_required ]'
req cur-alice GET /v1/sessions/current -H "$(ck "$SA")"
check "GET /v1/sessions/current with the cookie: alice, the same CSRF token" '[ "$ST" = 200 ] && [ "$(jq -r .principal.name <<<"$B")" = alice ] && [ "$(jq -r .csrf_token <<<"$B")" = "$XA" ]'
next_code bob; CB1=$CODE_; USED_CODES+=("$CB1")
req si-bob POST /v1/sessions "${JSON[@]}" -d "$(signin_body "${KEYS[bob]}" "$CB1")"
SB=$(setcookie); XB=$(jq -r .csrf_token <<<"$B")
check "bob (approver) signs in with his code: 201" '[ "$ST" = 201 ] && [ ${#SB} = 43 ]'
req si-compliance POST /v1/sessions "${JSON[@]}" -d "$(signin_body "${KEYS[compliance]}")"
SC=$(setcookie); XC=$(jq -r .csrf_token <<<"$B")
check "compliance (auditor, no second factor) signs in: 201" '[ "$ST" = 201 ] && [ ${#SC} = 43 ]'
req si-ops POST /v1/sessions "${JSON[@]}" -d "$(signin_body "${KEYS[ops]}")"
SO=$(setcookie); XO=$(jq -r .csrf_token <<<"$B")
check "ops (admin) signs in: 201" '[ "$ST" = 201 ] && [ ${#SO} = 43 ]'
SESSIONS=("$SA" "$SB" "$SC" "$SO"); CSRFS=("$XA" "$XB" "$XC" "$XO")

# --- 3. Cookie games -------------------------------------------------------------------------
echo "== 3. cookie games"
SRC=127.0.0.12
cur() { req "$1" GET /v1/sessions/current "${@:2}"; }
cur ck-forged -H "$(ck forged)"
check "a forged cookie: 401" '[ "$ST" = 401 ]'
R43=$(py rand43)
cur ck-random43 -H "$(ck "$R43")"
check "a random cookie of the right shape: 401" '[ "$ST" = 401 ]'
cur ck-stars -H "$(ck "$(printf '%.0s*' $(seq 43))")"
check "43 characters that are not base64url: 401" '[ "$ST" = 401 ]'
FLIP=$(py flip "$SA")
cur ck-flip -H "$(ck "$FLIP")"
check "alice's cookie spelled differently (a padding bit set, the same 256 bits): 401" '[ "$ST" = 401 ] && [ "$FLIP" != "$SA" ]'
cur ck-host -H "Cookie: __Host-strongroom_session=$SA"
check "alice's token under __Host-strongroom_session on plain HTTP: 401" '[ "$ST" = 401 ]'
cur ck-two-forged-first -H "Cookie: strongroom_session=$R43; strongroom_session=$SA"
check "two cookies, a forged one first: 401 (the first counts, no second try)" '[ "$ST" = 401 ]'
cur ck-two-good-first -H "Cookie: strongroom_session=$SA; strongroom_session=$R43"
check "two cookies, alice's first: alice" '[ "$ST" = 200 ] && [ "$(jq -r .principal.name <<<"$B")" = alice ]'
cur ck-bad-auth -H "$(ck "$SA")" -H 'Authorization: Bearer nope'
check "the cookie with a bad Authorization header: the header wins, 401" '[ "$ST" = 401 ]'
cur ck-empty-auth -H "$(ck "$SA")" -H 'Authorization;'
check "the cookie with an empty Authorization header: 401" '[ "$ST" = 401 ]'
cur ck-key-auth -H "$(ck "$SA")" -H "$(key "${KEYS[ops]}")"
check "the cookie with ops's API key: the key wins, no session (404)" '[ "$ST" = 404 ]'
cur ck-as-bearer -H "$(key "$SA")"
check "the session token as a Bearer API key: 401" '[ "$ST" = 401 ]'
cur ck-csrf-as-cookie -H "$(ck "$XA")"
check "the CSRF token as the cookie: 401" '[ "$ST" = 401 ]'
BASE=$URL2; start_vault "$D2" "$PORT2" "$W/vault2.log" || exit 1; V2=$VP
cur ck-other-vault -H "$(ck "$SA")"; BASE=$URL
check "alice's cookie on another vault: 401" '[ "$ST" = 401 ]'
req ck-policies GET /v1/policies -H "$(ck "$SA")"
check "GET /v1/policies with the cookie (no CSRF token needed): support-chargeback" '[ "$ST" = 200 ] && grep -q support-chargeback <<<"$B"'

# --- 4. CSRF -------------------------------------------------------------------------------
echo "== 4. CSRF"
SRC=127.0.0.13
count_requests() { req "list-$1" GET /v1/access-requests -H "$(ck "$SA")"; jq '.requests | length' <<<"$B"; }
N0=$(count_requests 0)
cur idle-a -H "$(ck "$SA")"; IDLE_A=$(jq -r .idle_expires_at <<<"$B")
next_code alice; CA2=$CODE_; USED_CODES+=("$CA2")
ASK1=$(jq -nc --arg a "${T[1]}" --arg b "${T[2]}" --arg c "$CA2" \
  '{tokens:[$a,$b],purpose:"chargeback",reason:"dispute 42",duration_seconds:600,max_uses:3,totp:$c}')
sleep 1.1
ask() { req "$1" POST /v1/access-requests -H "$(ck "$SA")" "${JSON[@]}" -d "$ASK1" "${@:2}"; }
ask csrf-none
check "POST without X-CSRF-Token (with a good TOTP code): 403 csrf_failed" '[ "$ST" = 403 ] && [ "$CODE" = csrf_failed ]'
ask csrf-empty -H 'X-CSRF-Token;'
check "an empty X-CSRF-Token: 403 csrf_failed" '[ "$ST" = 403 ] && [ "$CODE" = csrf_failed ]'
ask csrf-bobs -H "$(xs "$XB")"
check "bob's CSRF token: 403 csrf_failed" '[ "$ST" = 403 ] && [ "$CODE" = csrf_failed ]'
ask csrf-cookie -H "$(xs "$SA")"
check "the cookie's own value as the CSRF token: 403 csrf_failed" '[ "$ST" = 403 ] && [ "$CODE" = csrf_failed ]'
SWAP=$(tr 'a-zA-Z' 'A-Za-z' <<<"$XA")
ask csrf-case -H "$(xs "$SWAP")"
check "the CSRF token in swapped case: 403 csrf_failed" '[ "$ST" = 403 ] && [ "$CODE" = csrf_failed ]'
ask csrf-short -H "$(xs "${XA:0:42}")"
check "the CSRF token less its last character: 403 csrf_failed" '[ "$ST" = 403 ] && [ "$CODE" = csrf_failed ]'
req csrf-query POST "/v1/access-requests?csrf_token=$XA" -H "$(ck "$SA")" "${JSON[@]}" -d "$ASK1"
check "the CSRF token in the query instead of the header: 403 csrf_failed" '[ "$ST" = 403 ] && [ "$CODE" = csrf_failed ]'
ask csrf-override -H 'X-HTTP-Method-Override: GET'
check "POST with X-HTTP-Method-Override: GET: 403 csrf_failed" '[ "$ST" = 403 ] && [ "$CODE" = csrf_failed ]'
req csrf-text POST /v1/access-requests -H "$(ck "$SA")" -H 'Content-Type: text/plain' -d "$ASK1"
check "a cross-site simple POST (text/plain, no token): 403 csrf_failed" '[ "$ST" = 403 ] && [ "$CODE" = csrf_failed ]'
cur idle-b -H "$(ck "$SA")" -H 'X-Strongroom-Poll: 1'; IDLE_B=$(jq -r .idle_expires_at <<<"$B")
check "refused changes and a poll do not move the idle limit ($IDLE_A)" '[ "$IDLE_B" = "$IDLE_A" ]'
N1=$(count_requests 1)
check "nothing was created by the refused requests ($N0 requests before, $N1 after)" '[ "$N0" = "$N1" ]'
req csrf-delete DELETE /v1/sessions/current -H "$(ck "$SA")"
check "DELETE /v1/sessions/current without the token: 403 csrf_failed" '[ "$ST" = 403 ] && [ "$CODE" = csrf_failed ]'
cur csrf-still -H "$(ck "$SA")"
check "the session is still alive afterwards" '[ "$ST" = 200 ]'
IDLE_C=$(jq -r .idle_expires_at <<<"$B")
check "a request alice made moves the idle limit ($IDLE_C)" '[ "$(ISO "$IDLE_C")" -gt "$(ISO "$IDLE_A")" ]'
SRC=127.0.0.1
ask r1-create -H "$(xs "$XA")"
R1=$(jq -r .id <<<"$B")
check "with the token, the same TOTP code the refused requests carried is still good: 201" '[ "$ST" = 201 ] && [ "$(jq -r .status <<<"$B")" = pending ]'
next_code alice; CA3=$CODE_; USED_CODES+=("$CA3")
ASK2=$(jq -nc --arg a "${T[1]}" --arg c "$CA3" '{tokens:[$a],purpose:"dispute",reason:"dispute 43",duration_seconds:600,max_uses:5,totp:$c}')
req r2-create POST /v1/access-requests -H "$(ck "$SA")" -H "$(xs "$XA")" "${JSON[@]}" -d "$ASK2"
R2=$(jq -r .id <<<"$B")
check "alice asks a second time (one card, five uses): 201" '[ "$ST" = 201 ]'

# --- 5. Roles, requests and grants ------------------------------------------------------------
echo "== 5. roles, requests and grants"
reveal() { # NAME SESSION CSRF REQUEST TOKENS_JSON
  req "$1" POST "/v1/access-requests/$4/reveal" -H "$(ck "$2")" -H "$(xs "$3")" "${JSON[@]}" -d "{\"tokens\":$5}"
}
reveal rv-pending "$SA" "$XA" "$R1" "[\"${T[1]}\"]"
check "alice reveals through her request before approval: 403 grant_missing" '[ "$ST" = 403 ] && [ "$CODE" = grant_missing ]'
reveal rv-others "$SA" "$XA" "$RP" "[\"${T[1]}\"]"
check "alice reveals through payments' approved request: 404 not_found" '[ "$ST" = 404 ] && [ "$CODE" = not_found ]'
req get-others GET "/v1/access-requests/$RP" -H "$(ck "$SA")"
check "alice reads payments' request: 404" '[ "$ST" = 404 ]'
reveal rv-nouuid "$SA" "$XA" "not-a-uuid" "[\"${T[1]}\"]"
check "a reveal through a path that is no request id: 404" '[ "$ST" = 404 ]'
req rw-alice GET "/v1/access-requests/$R1/review" -H "$(ck "$SA")"
check "alice reviews (she is no approver or auditor): 403 forbidden" '[ "$ST" = 403 ] && [ "$CODE" = forbidden ]'
req ap-alice POST "/v1/access-requests/$R2/approve" -H "$(ck "$SA")" -H "$(xs "$XA")" "${JSON[@]}" -d '{}'
check "alice approves her own request: 403" '[ "$ST" = 403 ]'
req audit-alice GET /v1/audit -H "$(ck "$SA")"
check "alice reads the audit trail: 403" '[ "$ST" = 403 ]'
req revall-alice POST /v1/grants/revoke-all -H "$(ck "$SA")" -H "$(xs "$XA")"
check "alice revokes all grants (an admin's act): 403" '[ "$ST" = 403 ]'
req ap-nocsrf POST "/v1/access-requests/$R1/approve" -H "$(ck "$SB")" "${JSON[@]}" -d '{}'
check "bob approves without the CSRF token: 403 csrf_failed" '[ "$ST" = 403 ] && [ "$CODE" = csrf_failed ]'
next_code bob; CB2=$CODE_; USED_CODES+=("$CB2")
req ap-r1 POST "/v1/access-requests/$R1/approve" -H "$(ck "$SB")" -H "$(xs "$XB")" "${JSON[@]}" -d "{\"totp\":\"$CB2\"}"
check "bob approves request 1 with his session and code: 200 approved, no grant in the answer" '[ "$ST" = 200 ] && [ "$(jq -r .status <<<"$B")" = approved ] && [ "$(jq "has(\"grant\")" <<<"$B")" = false ]'
next_code bob; CB3=$CODE_; USED_CODES+=("$CB3")
req ap-r2 POST "/v1/access-requests/$R2/approve" -H "$(ck "$SB")" -H "$(xs "$XB")" "${JSON[@]}" -d "{\"totp\":\"$CB3\"}"
J2=$(jq -r .grant_jti <<<"$B")
check "bob approves request 2: 200" '[ "$ST" = 200 ] && [ "$J2" != null ]'
reveal rv-bob "$SB" "$XB" "$R1" "[\"${T[1]}\"]"
check "bob reveals through alice's request: 403 forbidden" '[ "$ST" = 403 ] && [ "$CODE" = forbidden ]'
reveal rv-compliance "$SC" "$XC" "$R1" "[\"${T[1]}\"]"
check "compliance reveals: 403 forbidden" '[ "$ST" = 403 ] && [ "$CODE" = forbidden ]'
reveal rv-ops "$SO" "$XO" "$R1" "[\"${T[1]}\"]"
check "ops reveals: 403 forbidden" '[ "$ST" = 403 ] && [ "$CODE" = forbidden ]'
req get-r1-cookie GET "/v1/access-requests/$R1" -H "$(ck "$SA")"
J1=$(jq -r .grant_jti <<<"$B")
check "alice's approved request read with her cookie: no grant field" '[ "$ST" = 200 ] && [ "$(jq -r .status <<<"$B")" = approved ] && [ "$(jq "has(\"grant\")" <<<"$B")" = false ] && ! grep -q eyJ <<<"$B"'
req get-r1-key GET "/v1/access-requests/$R1" -H "$(key "${KEYS[alice]}")"
check "the same request with her API key: the grant is there" '[ "$ST" = 200 ] && [[ "$(jq -r .grant <<<"$B")" == eyJ* ]]'
req list-cookie GET "/v1/access-requests" -H "$(ck "$SA")"
check "alice's list with the cookie: no grant" '[ "$ST" = 200 ] && ! grep -q eyJ <<<"$B"'
reveal rv-scope "$SA" "$XA" "$R1" "[\"${T[1]}\",\"${T[3]}\"]"
check "a reveal of a card the grant does not cover: 403 grant_scope" '[ "$ST" = 403 ] && [ "$CODE" = grant_scope ]'
reveal rv-nocsrf-prep "$SA" "" "$R1" "[\"${T[1]}\"]"
check "a reveal with an empty X-CSRF-Token: 403 csrf_failed" '[ "$ST" = 403 ] && [ "$CODE" = csrf_failed ]'
HR=$(jq -nc --arg c "strongroom_session=$SA" --arg x "$XA" '{"Content-Type":"application/json","Cookie":$c,"X-CSRF-Token":$x}')
S=$(py par 20 POST "$PORT" "/v1/access-requests/$R1/reveal" "$HR" "{\"tokens\":[\"${T[1]}\"]}" 127.0.0.1 "$W/out/par-reveal-")
GOOD=$(cat "$W"/out/par-reveal-*.body | jq -r '.data[0].value? // empty' | grep -cx "${PAN[1]}")
EXH=$(cat "$W"/out/par-reveal-*.body | jq -r '.code? // empty' | grep -cx grant_exhausted)
check "20 reveals at once on a grant of 3 uses: exactly 3 cards ($GOOD), 17 grant_exhausted ($EXH): $S" '[ "$(cnt 200 "$S")" = 3 ] && [ "$GOOD" = 3 ] && [ "$EXH" = 17 ]'
reveal rv-exhausted "$SA" "$XA" "$R1" "[\"${T[1]}\"]"
check "one more: 403 grant_exhausted" '[ "$ST" = 403 ] && [ "$CODE" = grant_exhausted ]'
req grants-alice GET /v1/grants -H "$(ck "$SA")"
check "GET /v1/grants: grant 1 used 3 of 3 times, no JWT" '[ "$(jq -r --arg j "$J1" ".grants[] | select(.jti == \$j) | \"\(.uses)/\(.max_uses)\"" <<<"$B")" = 3/3 ] && ! grep -q eyJ <<<"$B"'
reveal rv-r2 "$SA" "$XA" "$R2" "[\"${T[1]}\"]"
check "a reveal through request 2: the card, Cache-Control no-store" '[ "$ST" = 200 ] && [ "$(jq -r .data[0].value <<<"$B")" = "${PAN[1]}" ] && [ "$(hdr cache-control)" = no-store ]'
req rel-nocsrf POST "/v1/grants/$J2/revoke" -H "$(ck "$SA")"
check "releasing the grant without the CSRF token: 403 csrf_failed" '[ "$ST" = 403 ] && [ "$CODE" = csrf_failed ]'
reveal rv-r2-still "$SA" "$XA" "$R2" "[\"${T[1]}\"]"
check "...so the grant still works" '[ "$ST" = 200 ]'
req rel POST "/v1/grants/$J2/revoke" -H "$(ck "$SA")" -H "$(xs "$XA")"
check "alice releases the grant: 204" '[ "$ST" = 204 ]'
reveal rv-released "$SA" "$XA" "$R2" "[\"${T[1]}\"]"
check "a reveal after the release: 403 grant_revoked" '[ "$ST" = 403 ] && [ "$CODE" = grant_revoked ]'
req rw-bob GET "/v1/access-requests/$R1/review" -H "$(ck "$SB")"
cp "$W/out/rw-bob.body" "$W/review.json"
R1T1=$(jq -r --arg t "${T[1]}" '.cards[] | select(.token == $t) | "\(.reveals_30d) \(.revealed_by[0].name) \(.masked) \(.brand)"' <<<"$B")
check "bob's review: masked cards, brand, reveal counts ($R1T1)" '[ "$ST" = 200 ] && read -r c who m br <<<"$R1T1" && [ "$c" = 5 ] && [ "$who" = alice ] && [[ $m == *"${PAN[1]: -4}" ]] && [ "$br" = visa ]'
check "bob's review holds no PAN, no grant field, no JWT" '! grep -qF -f "$W/pans" <<<"$B" && [ "$(jq "[.. | objects | has(\"grant\")] | any" <<<"$B")" = false ] && ! grep -q eyJ <<<"$B"'
req rw-compliance GET "/v1/access-requests/$R2/review" -H "$(ck "$SC")"
check "compliance's review of request 2: 200, no PAN, no grant" '[ "$ST" = 200 ] && ! grep -qF -f "$W/pans" <<<"$B" && [ "$(jq "[.. | objects | has(\"grant\")] | any" <<<"$B")" = false ] && ! grep -q eyJ <<<"$B"'
req rw-payments GET "/v1/access-requests/$R1/review" -H "$(key "${KEYS[payments]}")"
check "payments' key reviews: 403" '[ "$ST" = 403 ]'

# --- 6. Sign-outs --------------------------------------------------------------------------
echo "== 6. sign-outs"
SRC=127.0.0.1
req si-compliance2 POST /v1/sessions "${JSON[@]}" -d "$(signin_body "${KEYS[compliance]}")"
SC2=$(setcookie); XC2=$(jq -r .csrf_token <<<"$B"); SESSIONS+=("$SC2"); CSRFS+=("$XC2")
HO=$(jq -nc --arg c "strongroom_session=$SC2" --arg x "$XC2" '{"Cookie":$c,"X-CSRF-Token":$x}')
S=$(py par 20 DELETE "$PORT" /v1/sessions/current "$HO" "" 127.0.0.14 "$W/out/par-signout-")
check "20 sign-outs of one session at once: exactly one 204, the rest 401 ($S)" '[ "$(cnt 204 "$S")" = 1 ] && [ "$(cnt 401 "$S")" = 19 ]'
SRC=127.0.0.15
cur so-reuse -H "$(ck "$SC2")"
check "the signed-out cookie again: 401" '[ "$ST" = 401 ]'
req so-out DELETE /v1/sessions/current -H "$(ck "$SA")" -H "$(xs "$XA")"
check "alice signs out: 204, the cookie cleared (Max-Age=0)" '[ "$ST" = 204 ] && grep -qi "^set-cookie: strongroom_session=; .*Max-Age=0" <<<"$H"'
reveal so-reveal "$SA" "$XA" "$R2" "[\"${T[1]}\"]"
check "alice's signed-out cookie with its CSRF token, revealing: 401" '[ "$ST" = 401 ]'
req so-again DELETE /v1/sessions/current -H "$(ck "$SA")" -H "$(xs "$XA")"
check "signing out again: 401" '[ "$ST" = 401 ]'
req so-other GET /v1/sessions/current -H "$(ck "$SB")"
check "bob's session is untouched by alice's sign-out" '[ "$ST" = 200 ] && [ "$(jq -r .principal.name <<<"$B")" = bob ]'
SRC=127.0.0.16
for i in $(seq 21); do req flood-$i POST /v1/sessions "${JSON[@]}" -d "$(signin_body "sr_guess_$i")"; done
check "21 sign-ins with guessed keys from one source: the 21st is 429 rate_limited" '[ "$ST" = 429 ] && [ -n "$(hdr retry-after)" ]'
req flood-xff POST /v1/sessions "${JSON[@]}" -H 'X-Forwarded-For: 198.51.100.9' -d "$(signin_body sr_guess_xff)"
check "X-Forwarded-For from an untrusted peer does not lift the throttle" '[ "$ST" = 429 ]'
cur flood-cookie -H "$(ck "$(py rand43)")"
check "nor does a forged cookie from that source get a 401 instead" '[ "$ST" = 429 ]'

# --- 7. The console's pages ------------------------------------------------------------------
echo "== 7. the console's pages"
SRC=127.0.0.1
req page-console GET /console
CSP=$(hdr content-security-policy)
check "/console: 200 HTML, CSP default-src 'none', frame-ancestors 'none', no 'unsafe-', no wildcard" \
  '[ "$ST" = 200 ] && [[ $(hdr content-type) == text/html* ]] && [[ $CSP == *"default-src '"'"'none'"'"'"* ]] && [[ $CSP == *"frame-ancestors '"'"'none'"'"'"* ]] && [[ $CSP == *"script-src '"'"'self'"'"'"* ]] && [[ $CSP != *unsafe* ]] && [[ $CSP != *"*"* ]] && [[ $CSP != *http:* ]]'
check "/console: X-Frame-Options DENY, no-store, nosniff, no-referrer" '[ "$(hdr x-frame-options)" = DENY ] && [ "$(hdr cache-control)" = no-store ] && [ "$(hdr x-content-type-options)" = nosniff ] && [ "$(hdr referrer-policy)" = no-referrer ]'
check "/console: no inline script or style, the script from this origin" '! grep -qiE "<script>|<script [^>]*>[^<]|<style|style=|[[:space:]]on[a-z]+=" <<<"$B" && grep -q "src=\"/console/assets/console.js\"" <<<"$B"'
okp=1; for p in requests inbox audit report grants; do
  req page-$p GET /console/$p
  { [ "$ST" = 200 ] && [ "$(hdr content-security-policy)" = "$CSP" ] && [ "$(hdr x-frame-options)" = DENY ] && [ "$(hdr cache-control)" = no-store ]; } || okp=0
done
check "/console/{requests,inbox,audit,report,grants}: 200 under the same CSP, DENY, no-store" '[ $okp = 1 ]'
req asset-js GET /console/assets/console.js
check "console.js: text/javascript, nosniff, no eval, no storage of secrets, no cookie reads" '[ "$ST" = 200 ] && [[ $(hdr content-type) == text/javascript* ]] && [ "$(hdr x-content-type-options)" = nosniff ] && ! grep -qE "eval\(|new Function|document\.cookie|localStorage|sessionStorage" <<<"$B"'
req asset-css GET /console/assets/console.css
check "console.css: text/css" '[ "$ST" = 200 ] && [[ $(hdr content-type) == text/css* ]]'
okp=1; bad=""
for p in /console/xyz /console/requests/x /console/assets/evil.js /console/assets/../../v1/policies \
         /console/../v1/policies /console//requests /console/%2e%2e/v1/policies /console/%2e%2e \
         /console/requests%00 /console/REQUESTS /console/%2fetc%2fpasswd /console/assets/console.js%00.html; do
  req page-trick GET "$p"
  if [ "$ST" != 404 ] || grep -q "<html" <<<"$B"; then okp=0; bad="$bad $p:$ST"; fi
done
check "unknown and tricky paths under /console: 404, never the shell or another route${bad}" '[ $okp = 1 ]'
req page-slash GET /console/
check "/console/ redirects to /console only" '[[ $ST == 30[178] ]] && [ "$(hdr location)" = /console ]'
req page-post POST /console -H "$(ck "$SB")" -H "$(xs "$XB")"
check "POST /console: 405" '[ "$ST" = 405 ]'

# --- 8. The audit trail --------------------------------------------------------------------
echo "== 8. the audit trail (as compliance)"
audit() { req "audit-$1" GET "/v1/audit?action=$1&limit=500" -H "$(key "${KEYS[compliance]}")"; }
audit session.start; cp "$W/out/audit-session.start.body" "$W/starts.json"
NA=$(py sname "$SA"); NC2=$(py sname "$SC2")
check "session.start: alice's sign-in, second_factor=totp, subject = her session's public name" '[ "$(jq --arg a "$ALICE" --arg s "$NA" "[.events[] | select(.actor == \$a and .outcome == \"success\" and .subject == \$s and .detail == \"second_factor=totp\")] | length" "$W/starts.json")" = 1 ]'
check "session.start: compliance's sign-ins with second_factor=none" '[ "$(jq "[.events[] | select(.outcome == \"success\" and .detail == \"second_factor=none\")] | length" "$W/starts.json")" -ge 3 ]'
check "session.start refused: checkout and payments (forbidden)" '[ "$(jq "[.events[] | select(.outcome == \"denied\" and .code == \"forbidden\")] | length" "$W/starts.json")" = 2 ]'
MFA=$(jq -r --arg a "$ALICE" '[.events[] | select(.actor == $a and .code == "mfa_required") | .detail] | group_by(.) | map("\(.[0])=\(length)") | join(" ")' "$W/starts.json")
MFAN=$(jq --arg a "$ALICE" '[.events[] | select(.actor == $a and .code == "mfa_required")] | length' "$W/starts.json")
check "session.start refused for alice: all 10 refusals, as missing, wrong or replayed ($MFA)" '[ "$MFAN" = 10 ] && [[ $MFA == *totp_missing=1* ]] && [[ $MFA =~ totp_wrong=[23] ]] && [[ $MFA =~ totp_replayed=[67] ]]'
audit session.end
check "session.end: the raced sign-out recorded ended once (the others refused, already_ended), alice's once" '[ "$(jq --arg s "$NC2" "[.events[] | select(.subject == \$s and .outcome == \"success\")] | length" <<<"$B")" = 1 ] && [ "$(jq --arg s "$NC2" "[.events[] | select(.subject == \$s and .outcome == \"denied\")] | all(.detail == \"already_ended\")" <<<"$B")" = true ] && [ "$(jq --arg s "$NA" "[.events[] | select(.subject == \$s and .detail == \"signed_out\")] | length" <<<"$B")" = 1 ]'
audit auth.failure
check "auth.failure: alice's CSRF failure from 127.0.0.13, detail csrf_mismatch" '[ "$(jq --arg a "$ALICE" "[.events[] | select(.actor == \$a and .detail == \"csrf_mismatch\" and .source == \"127.0.0.13\")] | length" <<<"$B")" -ge 1 ]'
audit detokenize; cp "$W/out/audit-detokenize.body" "$W/detok.json"
check "detokenize: 3 successes under grant 1, 18 grant_exhausted, 1 grant_scope" '[ "$(jq --arg j "$J1" "[.events[] | select(.grant_jti == \$j and .outcome == \"success\")] | length" "$W/detok.json")" = 3 ] && [ "$(jq --arg j "$J1" "[.events[] | select(.grant_jti == \$j and .code == \"grant_exhausted\")] | length" "$W/detok.json")" = 18 ] && [ "$(jq --arg j "$J1" "[.events[] | select(.grant_jti == \$j and .code == \"grant_scope\")] | length" "$W/detok.json")" = 1 ]'
check "detokenize: grant 2 used twice, then grant_revoked; bob, compliance and ops refused (forbidden)" '[ "$(jq --arg j "$J2" "[.events[] | select(.grant_jti == \$j and .outcome == \"success\")] | length" "$W/detok.json")" = 2 ] && [ "$(jq --arg j "$J2" "[.events[] | select(.grant_jti == \$j and .code == \"grant_revoked\")] | length" "$W/detok.json")" = 1 ] && [ "$(jq "[.events[] | select(.code == \"forbidden\")] | length" "$W/detok.json")" = 3 ]'
check "detokenize: alice's reveal through payments' request refused (not_found) and before approval (grant_missing)" '[ "$(jq --arg r "$RP" "[.events[] | select(.subject == \$r and .code == \"not_found\")] | length" "$W/detok.json")" = 1 ] && [ "$(jq "[.events[] | select(.code == \"grant_missing\")] | length" "$W/detok.json")" = 1 ]'

# --- 9. The TOTP lockout (second vault) ------------------------------------------------------
echo "== 9. TOTP lockout (second vault)"
BASE=$URL2; SRC=127.0.0.20
declare -A KEYS1; for p in "${!KEYS[@]}"; do KEYS1[$p]=${KEYS[$p]}; done
load_people "$D2"; LAST=()
okw=1; for i in $(seq 11); do
  WRONG=$(wrong_code alice); USED_CODES+=("$WRONG")
  req lock-$i POST /v1/sessions "${JSON[@]}" -d "$(signin_body "${KEYS[alice]}" "$WRONG")"
  { [ "$ST" = 403 ] && [ "$CODE" = mfa_required ]; } || okw=0
done
check "11 wrong codes for alice: each 403 mfa_required" '[ $okw = 1 ]'
next_code alice; USED_CODES+=("$CODE_")
req lock-right POST /v1/sessions "${JSON[@]}" -d "$(signin_body "${KEYS[alice]}" "$CODE_")"
check "then her right code: 403 mfa_required, no cookie" '[ "$ST" = 403 ] && [ "$CODE" = mfa_required ] && ! grep -qi "^set-cookie" <<<"$H"'
check "the lock reads exactly like a wrong code" '[ "$(jq -r .detail <<<"$B")" = "$WRONG_DETAIL" ]'
next_code bob; USED_CODES+=("$CODE_")
req lock-bob POST /v1/sessions "${JSON[@]}" -d "$(signin_body "${KEYS[bob]}" "$CODE_")"
SB2=$(setcookie); SESSIONS+=("$SB2")
check "bob is not locked: 201" '[ "$ST" = 201 ]'
req lock-audit GET "/v1/audit?action=session.start&limit=500" -H "$(key "${KEYS[compliance]}")"
check "the trail says which it was: the 11th wrong code and the right one, totp_locked" '[ "$(jq "[.events[] | select(.detail == \"totp_locked\")] | length" <<<"$B")" = 2 ]'
BASE=$URL

# --- 10. Leaks -----------------------------------------------------------------------------
echo "== 10. leaks"
OUTS=$(ls "$W"/out/* | wc -l)
ALLKEYS=("${KEYS1[@]}" "${KEYS[@]}")
printf '%s\n' "${ALLKEYS[@]}" >"$W/keys"
ls "$W"/out/*.body | grep -vE '/(rv-r2|rv-r2-still|par-reveal-[0-9]+)\.body$' >"$W/nonreveal"
check "no PAN in any answer but the reveals ($OUTS files)" '! xargs cat <"$W/nonreveal" | grep -qF -f "$W/pans" && ! cat "$W"/out/*.headers | grep -qF -f "$W/pans"'
check "no API key in any answer body or header" '! cat "$W"/out/* | grep -qF -f "$W/keys"'
check "no TOTP code quoted in any answer" '! cat "$W"/out/* | grep -qF -f <(printf "\"%s\"\n" "${USED_CODES[@]}")'
okc=1; badc=""
for s in "${SESSIONS[@]}"; do
  hits=$(grep -rlF -e "$s" "$W/out")
  [ "$(wc -l <<<"$hits")" = 1 ] && [[ $hits == *.headers ]] && grep -q '^HTTP/1.1 201' "$hits" && grep -qi "^set-cookie: strongroom_session=$s;" "$hits" || { okc=0; badc="$badc $(basename -a $hits | tr '\n' ,)"; }
done
check "each session token appears once: the Set-Cookie of its own sign-in${badc}" '[ $okc = 1 ]'
check "CSRF tokens only in bodies, never in headers" '! cat "$W"/out/*.headers | grep -qF -f <(printf "%s\n" "${CSRFS[@]}")'
check "a grant JWT only in the two answers to API keys (payments' ask, alice's GET by key)" '[ "$(grep -l eyJ "$W"/out/*.body | xargs -n1 basename | sort | tr "\n" " ")" = "get-r1-key.body pay-ask.body " ]'
for v in 1 2; do
  LOG=$W/vault$v.log
  sed -n '/Ctrl-C stops it/,$p' "$LOG" >"$W/vault$v.after"
  note "vault $v log: $(wc -l <"$LOG") lines, $(wc -l <"$W/vault$v.after") after the banner"
  check "vault $v log after the banner: no PAN, API key, TOTP secret, session or CSRF token, grant" \
    '! grep -qF -f "$W/pans" "$W/vault$v.after" && ! grep -qF -f "$W/keys" "$W/vault$v.after" && ! grep -qF -e "${SECRET[alice]}" -e "${SECRET[bob]}" "$W/vault$v.after" && ! grep -qF -f <(printf "%s\n" "${SESSIONS[@]}" "${CSRFS[@]}") "$W/vault$v.after" && ! grep -q eyJ "$W/vault$v.after"'
  check "vault $v log: no TOTP code, no panic, no 5xx" '! grep -qwF -f <(printf "%s\n" "${USED_CODES[@]}") "$W/vault$v.after" && ! grep -qiE "panicked|backtrace" "$LOG" && ! grep -qE "\"status\":5[0-9][0-9]|status=5[0-9][0-9]" "$LOG"'
done
check "no 5xx answer anywhere" '! grep -lE "^HTTP/1.1 5" "$W"/out/*.headers | grep -q .'

finish
