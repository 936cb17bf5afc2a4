#!/usr/bin/env bash
# An outsider's attack on the key ceremony of a release build: keygen and `keys split`
# refusals, a sealed instance's whole surface (every route but the unseal one, path tricks,
# methods, bodies), share games (typos, case and spaces, duplicates, other splits, another
# key's full set, another threshold, forged checksums), the per-source throttle, shares raced
# at one instance, sealing by an admin and by others, two sealed instances on one database,
# `strongroom unseal`, the trail of it all, leaks of shares into answers, logs and the trail,
# and the master key in a SoftHSM2 token (keygen refusals, the key's value out of reach,
# rewrap from the environment into the HSM and back with a card still readable).
#
# Share submissions are throttled per source address (10 a minute per instance), so each
# group of submissions comes from a loopback address of its own (127.0.0.x); the concurrent
# ones each from their own.
#
#   bench/attack/ceremony.sh        # BIN=/path/to/strongroom for another build; KEEP=1 keeps $W
set -u
. "$(dirname "$0")/lib.sh"   # check, note, finish, py, JSON, key, hdr, gone_within
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release/strongroom}
PORT=${PORT:-18830}
PORT2=${PORT2:-$((PORT + 1))}
PORT3=${PORT3:-$((PORT + 2))}
URLA=http://127.0.0.1:$PORT
URLB=http://127.0.0.1:$PORT2
URLH=http://127.0.0.1:$PORT3
MODULE=/usr/lib/softhsm/libsofthsm2.so
. .ci/postgres.sh >/dev/null
ADMINDB=$STRONGROOM_TEST_DATABASE_URL
DB=strongroom_ceremonyattack_$$
DBH=strongroom_ceremonyhsm_$$
W=$(mktemp -d /tmp/ceremony-attack.XXXXXX)
mkdir -p "$W/out" "$W/log" "$W/setup" "$W/hsm/tokens"
PIDS=""
cleanup() {
  for p in $PIDS; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  for d in $DB $DBH; do psql "$ADMINDB" -qtAc "drop database if exists $d with (force)" >/dev/null 2>&1; done
  [ "${KEEP:-0}" = 1 ] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT
for v in STRONGROOM_MASTER_KEY STRONGROOM_MASTER_KEY_PKCS11 STRONGROOM_NEW_MASTER_KEY \
  STRONGROOM_NEW_MASTER_KEY_PKCS11 STRONGROOM_SEALED STRONGROOM_UNSEAL_THRESHOLD \
  STRONGROOM_AUDIT_CHECKPOINT_FILE STRONGROOM_PKCS11_PIN STRONGROOM_LISTEN STRONGROOM_POLICY_FILE; do
  unset "$v"
done
T0=$(date +%s)

# run NAME CMD...: stdout and stderr together in $OUT and $W/out/NAME (grepped for leaks), exit in $RC.
run() { local name=$1; shift; OUT=$("$@" 2>&1 </dev/null); RC=$?; printf '%s\n' "$OUT" >"$W/out/$name"; }
# A refusal is clean: nonzero, not a panic (101) or a signal, no backtrace.
clean_refusal() { [ "$RC" -ne 0 ] && [ "$RC" -ne 101 ] && [ "$RC" -lt 128 ] && ! grep -qiE 'panick|backtrace|RUST_BACKTRACE' <<<"$OUT"; }

cat >"$W/h.py" <<'PY'
import hashlib, http.client, json, os, random, sys, threading

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

def forge(threshold, index, split=None):
    """A share of the format with a correct checksum (it is no secret: SHA-256 of public
    parts), of a split (random, or the one named in hex) and a y of the forger's choosing."""
    split, y = (bytes.fromhex(split) if split else os.urandom(4)), os.urandom(32)
    chk = hashlib.sha256(b"strongroom:key-share:v1" + split + bytes([int(threshold), int(index)]) + y).digest()[:4]
    print(f"srs1-{split.hex()}-{int(threshold)}-{int(index):02}-{y.hex()}-{chk.hex()}")

def par(port, items, prefix):
    """POSTs each [src, body] of ITEMS (JSON) to /v1/sys/unseal on a connection of its own
    from SRC, all released at once; each answer to PREFIX<i>.headers/.body; prints one line
    per answer: status sealed progress code."""
    items = json.loads(items)
    n = len(items)
    barrier, out = threading.Barrier(n), [None] * n
    def go(i):
        src, body = items[i]
        c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=30, source_address=(src, 0))
        try:
            c.connect()
            barrier.wait()
            c.request("POST", "/v1/sys/unseal", body=body.encode(), headers={"Content-Type": "application/json"})
            r = c.getresponse()
            raw = r.read()
            with open(f"{prefix}{i}.headers", "w") as f:
                f.write(f"HTTP/1.1 {r.status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in r.getheaders()))
            with open(f"{prefix}{i}.body", "wb") as f:
                f.write(raw)
            try:
                b = json.loads(raw)
            except ValueError:
                b = {}
            out[i] = f"{r.status} {str(b.get('sealed', '-')).lower()} {b.get('progress', '-')} {b.get('code', '-')}"
        except Exception as e:  # noqa: BLE001
            out[i] = f"0 - - {type(e).__name__}"
    ts = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in ts: t.start()
    for t in ts: t.join()
    print("\n".join(out))

getattr(sys.modules[__name__], sys.argv[1])(*sys.argv[2:])
PY

# req NAME METHOD PATH [curl args]: from $SRC to $BASE; status in $ST, body in $B, problem code
# in $CODE, response headers in $H; kept in $W/out/NAME.* (grepped for leaks).
SRC=127.0.0.2; BASE=$URLA
req() {
  local name=$1 m=$2 p=$3; shift 3
  local how=(-X "$m"); [ "$m" = HEAD ] && how=(-I)
  ST=$(curl -s --path-as-is --max-time 20 --interface "$SRC" -o "$W/out/$name.body" -D "$W/out/$name.headers" \
    -w '%{http_code}' "${how[@]}" "$BASE$p" "$@")
  B=$(cat "$W/out/$name.body"); H=$(tr -d '\r' <"$W/out/$name.headers")
  CODE=$(jq -r '.code? // empty' <<<"$B" 2>/dev/null)
}
# sub NAME SHARE: submits SHARE (any text) as {"share": SHARE}; $SEALED, $PROG, $THR from the answer.
sub() {
  req "$1" POST /v1/sys/unseal "${JSON[@]}" --data-binary "$(jq -nc --arg s "$2" '{share: $s}')" "${@:3}"
  local f; for f in sealed progress threshold; do
    printf -v "$f" '%s' "$(jq -r --arg f "$f" 'if type == "object" and has($f) then .[$f] else "" end' <<<"$B" 2>/dev/null)"
  done
  SEALED=$sealed; PROG=$progress; THR=$threshold
}
is() { [ "$ST" = "$1" ] && [ "$CODE" = "$2" ]; }
progress_is() { [ "$ST" = 200 ] && [ "$SEALED" = "$1" ] && [ "$PROG" = "$2" ]; }
# flip SHARE: the same share with one hex digit of its body changed (a typo the checksum catches).
flip() { local s=$1 c=${1:30:1} r=0; [ "$c" = 0 ] && r=1; printf '%s%s%s' "${s:0:30}" "$r" "${s:31}"; }

# start NAME PORT ENV... -- ARGS...: `serve` on PORT with only ENV added (no key unless given);
# waits for the log line "strongroom sealed" or "strongroom serving"; its pid in $SP.
start() {
  local name=$1 port=$2; shift 2
  local envs=(); while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  env -u STRONGROOM_MASTER_KEY -u STRONGROOM_MASTER_KEY_PKCS11 "${envs[@]}" \
    $BIN serve --listen "127.0.0.1:$port" --policy-file "$W/policies.toml" --rate-limit-per-second 0 "$@" \
    >>"$W/log/$name.out" 2>>"$W/log/$name.err" &
  SP=$!; PIDS="$PIDS $SP"
  for _ in $(seq 150); do
    grep -qE '"message":"strongroom (sealed|serving)' "$W/log/$name.out" && return 0
    kill -0 "$SP" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
# stop PID: SIGTERM, again after 5 s if it is still there, then SIGKILL.
stop() {
  kill "$1" 2>/dev/null
  gone_within 5 "$1" || { kill "$1" 2>/dev/null; gone_within 2 "$1" || kill -KILL "$1" 2>/dev/null; }
  wait "$1" 2>/dev/null
}
# ready URL / sealed_now URL: wait up to 10 s for readyz 200 / for a 503 `sealed` on an API route.
ready() { for _ in $(seq 100); do [ "$(curl -s -o /dev/null -w '%{http_code}' "$1/readyz")" = 200 ] && return 0; sleep 0.1; done; return 1; }
sealed_now() {
  for _ in $(seq 100); do
    curl -s "$1/v1/tokens/tok_x" -H "$(key "$TOK")" | grep -q '"code":"sealed"' && return 0; sleep 0.1
  done; return 1
}
pkey() { sed -n 's/.*"key":"\([^"]*\)".*/\1/p'; }
# tokenize BASE KEY PAN -> token; reveal BASE KEY TOKEN -> value (a fresh checkout grant).
tokenize() { curl -s "$1/v1/tokens" -H "$(key "$2")" "${JSON[@]}" -d "{\"value\":\"$3\"}" | jq -r '.token // empty'; }
reveal() {
  local g; g=$(curl -s "$1/v1/access-requests" -H "$(key "$2")" "${JSON[@]}" \
    -d '{"any_token":true,"purpose":"payment_authorization","reason":"ceremony attack","duration_seconds":60,"max_uses":5}' | jq -r '.grant // empty')
  curl -s "$1/v1/detokenize" -H "$(key "$2")" -H "X-Access-Grant: $g" "${JSON[@]}" -d "{\"tokens\":[\"$3\"]}" | jq -r '.data[0].value // empty'
}
audit() { # QUERY -> the events of GET /v1/audit?QUERY as the auditor on instance A
  curl -s "$URLA/v1/audit?$1&limit=500" -H "$(key "$AUD")" | tee "$W/out/audit-$(tr -c 'a-z0-9' _ <<<"$1").json" | jq -c '.events'
}

# --- Setup -------------------------------------------------------------------------------
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release --locked first"; exit 1; }
cat >"$W/policies.toml" <<'TOML'
[[policy]]
name = "checkout"
roles = ["detokenizer"]
purposes = ["payment_authorization"]
approvals = 0
max_duration_seconds = 3600
max_uses = 1000000
any_token = true
TOML
psql "$ADMINDB" -qtAc "create database $DB" >/dev/null || exit 1
export DATABASE_URL=${ADMINDB%/*}/$DB
KEY=$($BIN keygen)
STRONGROOM_MASTER_KEY=$KEY $BIN migrate >/dev/null || { echo "migrate failed"; exit 1; }
start keyed "$PORT" STRONGROOM_MASTER_KEY="$KEY" -- || { echo "the keyed server did not start: $(tail -n3 "$W/log/keyed.err")"; exit 1; }
K0=$SP
mk() { STRONGROOM_MASTER_KEY=$KEY $BIN principal create --tenant "$1" --name "$2" --role "$3" --json | pkey; }
ADM=$(mk acme ops admin); AUD=$(mk acme compliance auditor); TOK=$(mk acme checkout tokenizer)
DET=$(mk acme payments detokenizer); GADM=$(mk globex ops admin)
PAN0=$(py pan "$$"); TOKEN0=$(tokenize "$URLA" "$TOK" "$PAN0")
stop "$K0"
[ -n "$TOKEN0" ] && [ -n "$GADM" ] || { echo "setup failed: token '$TOKEN0'"; exit 1; }
FPR=$(STRONGROOM_MASTER_KEY=$KEY $BIN keys status --json | jq -r .master_key.fingerprint)
echo "setup: database $DB, master key $FPR, a card tokenized, five principals"
split() { # NAME SHARES THRESHOLD [KEY]: `keys split --json` under KEY; the shares one a line in $W/setup/NAME
  STRONGROOM_MASTER_KEY=${4:-$KEY} $BIN keys split --shares "$2" --threshold "$3" --json \
    >"$W/setup/$1.json" 2>"$W/setup/$1.err" </dev/null
  local rc=$?; jq -r '.shares[]' "$W/setup/$1.json" >"$W/setup/$1" 2>/dev/null; return $rc
}
SHARE_RE='^srs1-[0-9a-f]{8}-[0-9]+-[0-9]{2}-[0-9a-f]{64}-[0-9a-f]{8}$'

# --- 1. The ceremony's commands ------------------------------------------------------------
echo "== 1. keygen --shares and keys split"
$BIN keygen --shares 5 --threshold 3 --json >"$W/setup/F.json" 2>"$W/setup/F.err" </dev/null; RCF=$?
jq -r '.shares[]' "$W/setup/F.json" >"$W/setup/F" 2>/dev/null
mapfile -t F <"$W/setup/F"
check "keygen --shares 5 --threshold 3 --json: five shares of the format, threshold 3, nothing else on stdout" \
  '[ $RCF = 0 ] && [ ${#F[@]} = 5 ] && [ "$(grep -cE "$SHARE_RE" "$W/setup/F")" = 5 ] && [ "$(jq -r ".threshold" "$W/setup/F.json")" = 3 ] && [ "$(jq -c "keys" "$W/setup/F.json")" = "[\"shares\",\"threshold\"]" ]'
check "keygen's shares: one split id, indices 01..05, and stderr names a fingerprint, not a share" \
  '[ "$(cut -d- -f2 "$W/setup/F" | sort -u | wc -l)" = 1 ] && [ "$(cut -d- -f4 "$W/setup/F" | tr "\n" " ")" = "01 02 03 04 05 " ] && grep -qE "master key [0-9a-f]{12}" "$W/setup/F.err" && ! grep -q srs1 "$W/setup/F.err"'
bad=""
for a in "3 4" "17 3" "3 1" "1 1" "0 0" "3 -1" "300 2"; do
  set -- $a; run "keygen-$1-$2" $BIN keygen --shares "$1" --threshold "$2"
  { clean_refusal && ! grep -q srs1 <<<"$OUT"; } || bad="$bad $1/$2:$RC"
done
run keygen-shares-only $BIN keygen --shares 3; { clean_refusal && ! grep -q srs1 <<<"$OUT"; } || bad="$bad shares-only:$RC"
check "keygen refuses shares/threshold 3/4, 17/3, 3/1, 1/1, 0/0, 3/-1, 300/2 and --shares alone, printing no share${bad}" '[ -z "$bad" ]'
split S 5 3; RCS=$?; mapfile -t S <"$W/setup/S"
check "keys split --shares 5 --threshold 3 under the vault's key: five shares of the format, the fingerprint on stderr" \
  '[ $RCS = 0 ] && [ "$(grep -cE "$SHARE_RE" "$W/setup/S")" = 5 ] && grep -q "master key $FPR" "$W/setup/S.err"'
check "keys split prints neither the master key nor its bytes" '! grep -qF "$KEY" "$W/setup/S.json" "$W/setup/S.err"'
split OS 5 3; mapfile -t OS <"$W/setup/OS"
check "a second split of the same key is another set (another split id)" \
  '[ ${#OS[@]} = 5 ] && [ "$(cut -d- -f2 <<<"${OS[0]}")" != "$(cut -d- -f2 <<<"${S[0]}")" ]'
split T2 3 2; mapfile -t T2 <"$W/setup/T2"
split S6 6 3; mapfile -t S6 <"$W/setup/S6"
STRONGROOM_MASTER_KEY=$KEY $BIN keys split --shares 3 --threshold 2 >"$W/setup/text" 2>/dev/null </dev/null
check "keys split without --json: exactly one share a line on stdout" '[ "$(wc -l <"$W/setup/text")" = 3 ] && [ "$(grep -cE "$SHARE_RE" "$W/setup/text")" = 3 ]'
OTHER=$($BIN keygen)
run split-other env STRONGROOM_MASTER_KEY="$OTHER" $BIN keys split --shares 3 --threshold 2
check "keys split under a strong key that is not the vault's: refused, no share: $(head -n1 <<<"$OUT" | cut -c1-90)" 'clean_refusal && ! grep -q srs1 <<<"$OUT" && grep -q "does not open" <<<"$OUT"'
run split-nokey $BIN keys split --shares 3 --threshold 2
check "keys split with no key: refused, no share" 'clean_refusal && ! grep -q srs1 <<<"$OUT"'
run split-counts env STRONGROOM_MASTER_KEY="$KEY" $BIN keys split --shares 3 --threshold 4
check "keys split with a threshold above the shares: refused, no share" 'clean_refusal && ! grep -q srs1 <<<"$OUT"'
run split-dev env STRONGROOM_MASTER_KEY="strongroom-dev-key:$KEY" $BIN keys split --shares 3 --threshold 2
check "keys split of a development key: refused, no share" 'clean_refusal && ! grep -q srs1 <<<"$OUT"'
run split-audit-count psql "$DATABASE_URL" -qtAc "select count(*) from audit_events where action = 'key.split'"
check "each split made is recorded, the refused ones not (key.split: $OUT records for 5 splits)" '[ "$OUT" = 5 ]'

# --- 2. A sealed start -------------------------------------------------------------------------
echo "== 2. a sealed instance's surface"
run sealed-with-key env STRONGROOM_MASTER_KEY="$KEY" $BIN serve --sealed --listen "127.0.0.1:$PORT"
check "serve --sealed with STRONGROOM_MASTER_KEY set: refused, tells to remove it, the key not echoed" 'clean_refusal && grep -q "remove the key" <<<"$OUT" && ! grep -qF "$KEY" <<<"$OUT"'
run sealed-with-hsm env STRONGROOM_MASTER_KEY_PKCS11="module=$MODULE;token=none;label=none" $BIN serve --sealed --listen "127.0.0.1:$PORT"
check "serve --sealed with STRONGROOM_MASTER_KEY_PKCS11 set: refused" 'clean_refusal && grep -q "remove the key" <<<"$OUT"'
run serve-nokey timeout 20 $BIN serve --listen "127.0.0.1:$PORT"
check "serve with no key and neither --sealed nor --unseal-threshold: refused" 'clean_refusal'
start A "$PORT" -- --sealed || { echo "sealed A did not start: $(tail -n3 "$W/log/A.err")"; exit 1; }; PA=$SP
start B "$PORT2" -- --unseal-threshold 3 || { echo "sealed B did not start: $(tail -n3 "$W/log/B.err")"; exit 1; }; PB=$SP
check "both start sealed; the log line names the address" \
  '[ "$(jq -r "select(.message | startswith(\"strongroom sealed\")) | .listen" "$W/log/A.out")" = "127.0.0.1:$PORT" ] && grep -q "\"listen\":\"127.0.0.1:$PORT2\"" "$W/log/B.out"'
req healthz GET /healthz
check "GET /healthz: 200" '[ "$ST" = 200 ]'
req readyz GET /readyz
check "GET /readyz: 503 not_ready, reason sealed" 'is 503 not_ready && [ "$(jq -r .reason <<<"$B")" = sealed ]'
req head-healthz HEAD /healthz
check "HEAD /healthz: 200" '[ "$ST" = 200 ]'
bad=""; i=0
while read -r m p; do
  i=$((i + 1))
  req "surface-$i" "$m" "$p" -H "$(key "$ADM")" "${JSON[@]}" -d '{"share":"srs1-probe","value":"4111111111111111"}'
  { is 503 sealed && [ "$(hdr retry-after)" = 1 ] && [ "$(hdr cache-control)" = no-store ]; } || bad="$bad $m:$p:$ST:$CODE"
done <<'ROUTES'
GET /v1/tokens/tok_abc
POST /v1/tokens
DELETE /v1/tokens/tok_abc
POST /v1/tokens/batch
POST /v1/detokenize
GET /v1/audit
GET /v1/audit?scope=system
POST /v1/sys/seal
GET /v1/sys/seal
POST /v1/access-requests
GET /v1/grants
POST /v1/sessions
GET /v1/policies
GET /console
GET /console/assets/console.js
GET /metrics
GET /.well-known/jwks.json
GET /openapi.yaml
GET /
PUT /healthz
POST /readyz
DELETE /readyz
GET /v1/sys/unseal
PUT /v1/sys/unseal
DELETE /v1/sys/unseal
PATCH /v1/sys/unseal
OPTIONS /v1/sys/unseal
ROUTES
check "27 routes and methods other than POST /v1/sys/unseal (an admin's key, a JSON body): 503 sealed, Retry-After 1, no-store${bad}" '[ -z "$bad" ]'
SRC=127.0.0.3; bad=""; i=0
for p in /v1/sys/unseal/ //v1/sys/unseal /v1/sys//unseal /v1/sys/./unseal /v1/sys/../sys/unseal /v1//sys/unseal \
         /v1/sys/%75nseal /v1/sys/unseal%2f /v1/sys%2funseal /V1/SYS/UNSEAL /v1/sys/Unseal '/v1/sys/unseal;x=1' \
         /v1/sys/unseal%00 /v1/sys/unseal%20 /healthz/../v1/tokens /readyz/../v1/sys/seal /v1/sys/unseal/..%2f..%2fv1/tokens \
         /v1/sys/unseal.json; do
  i=$((i + 1))
  req "trick-$i" POST "$p" "${JSON[@]}" -d '{"share":"srs1-path-trick"}'
  is 503 sealed || bad="$bad $p:$ST:$CODE"
done
check "18 path tricks around the unseal route (encodings, slashes, dots, case, suffixes): 503 sealed, never the unseal handler${bad}" '[ -z "$bad" ]'
req head-tokens HEAD /v1/tokens
check "HEAD /v1/tokens: 503" '[ "$ST" = 503 ]'
req cors OPTIONS /v1/sys/unseal -H 'Origin: https://evil.example' -H 'Access-Control-Request-Method: POST' -H 'Access-Control-Request-Headers: content-type'
check "a CORS preflight for the unseal route from another origin: granted nothing ($ST)" '! grep -qi "^access-control-allow" <<<"$H"'
head -c 4000000 /dev/zero | tr '\0' 'a' | sed 's/^/{"value":"/; s/$/"}/' >"$W/huge.json"
req huge-tokens POST /v1/tokens -H "$(key "$TOK")" "${JSON[@]}" --data-binary @"$W/huge.json"
check "a 4 MB body to /v1/tokens while sealed: 503 sealed (not read, no crash)" 'is 503 sealed'
req health-after-huge GET /healthz
check "still alive afterwards" '[ "$ST" = 200 ]'

# --- 3. Unseal bodies that never reach a share -------------------------------------------------
echo "== 3. unseal bodies"
SRC=127.0.0.31
U=/v1/sys/unseal
S0J=$(jq -nc --arg s "${S[0]}" '{share: $s}')
req b-text POST $U -H 'Content-Type: text/plain' -d "$S0J"
check "text/plain (a CORS-simple request): 415" 'is 415 unsupported_media_type'
req b-notype POST $U -H 'Content-Type:' --data-binary "$S0J"
check "no Content-Type: 415" '[ "$ST" = 415 ]'
req b-form POST $U --data-urlencode "share=${S[0]}"
check "form-encoded: 415" '[ "$ST" = 415 ]'
req b-jsonish POST $U -H 'Content-Type: application/jsonx' -d "$S0J"
check "application/jsonx: 415" '[ "$ST" = 415 ]'
req b-malformed POST $U "${JSON[@]}" -d "{\"share\":\"${S[0]}\""
check "malformed JSON: 400 malformed_json" 'is 400 malformed_json'
req b-extra POST $U "${JSON[@]}" -d "{\"share\":\"${S[0]}\",\"progress\":3}"
check "an extra field (with a real share): 422 unknown_field" 'is 422 unknown_field'
req b-dup POST $U "${JSON[@]}" -d "{\"share\":\"x\",\"share\":\"${S[0]}\"}"
check "the share key twice: 422 duplicate_field" 'is 422 duplicate_field'
req b-number POST $U "${JSON[@]}" -d '{"share":12345678901234567890}'
check "share as a number: 422 invalid_field" 'is 422 invalid_field'
req b-null POST $U "${JSON[@]}" -d '{"share":null}'
check "share null: 422" '[ "$ST" = 422 ]'
req b-array-share POST $U "${JSON[@]}" -d "{\"share\":[\"${S[0]}\"]}"
check "share as an array: 422" '[ "$ST" = 422 ]'
req b-empty-obj POST $U "${JSON[@]}" -d '{}'
check "{}: 422" '[ "$ST" = 422 ]'
req b-array POST $U "${JSON[@]}" -d "[\"${S[0]}\"]"
check "a JSON array: 422" '[ "$ST" = 422 ]'
req b-string POST $U "${JSON[@]}" -d "\"${S[0]}\""
check "a bare JSON string: 422" '[ "$ST" = 422 ]'
req b-empty POST $U "${JSON[@]}"
check "an empty body: 400 or 422" '[ "$ST" = 400 ] || [ "$ST" = 422 ]'
python3 -c 'print("{\"share\":\"" + "a" * 5000 + "\"}")' >"$W/5k.json"
req b-5k POST $U "${JSON[@]}" --data-binary @"$W/5k.json"
check "a 5 KB body: 413 payload_too_large" 'is 413 payload_too_large'
req b-4m-chunked POST $U "${JSON[@]}" -H 'Transfer-Encoding: chunked' --data-binary @"$W/huge.json"
check "a 4 MB chunked body (no length declared): 413" '[ "$ST" = 413 ]'
req b-bom POST $U "${JSON[@]}" --data-binary "$(printf '\xef\xbb\xbf')$S0J"
check "a byte-order mark before the JSON: 400 ($ST)" '[ "$ST" = 400 ]'
check "none of these answers echoes the share" '! cat "$W"/out/b-*.body | grep -qiF "$(cut -d- -f5 <<<"${S[0]}")"'

# --- 4. Share games ------------------------------------------------------------------------
echo "== 4. share games (instance A, then B)"
SRC=127.0.0.41
sub g-typo1 "$(flip "${S[0]}")"
check "share 1 with one hex digit changed: 422 invalid_share, named as mistyped" 'is 422 invalid_share && grep -q mistyped <<<"$B"'
sub g-s1-caps "  ${S[0]^^} "$'\n'
check "share 1 in upper case with spaces and a newline around it: accepted, 1 of 3, sealed (none of section 3 counted)" 'progress_is true 1 && [ "$THR" = 3 ]'
sub g-typo2 "$(flip "${S[1]}")"
check "share 2 mistyped: 422 invalid_share" 'is 422 invalid_share'
sub g-s1-again "${S[0]}"
check "share 1 again (as typed the first time): 422 invalid_share, given already" 'is 422 invalid_share && grep -q "given already" <<<"$B"'
sub g-s1-plus "$(sed -E 's/^(srs1-[0-9a-f]{8})-3-01-/\1-+3-001-/' <<<"${S[0]}")"
check "share 1 spelled +3 and 001 (same numbers): refused as share 1 again or malformed, not a new slot ($ST $CODE)" 'is 422 invalid_share'
sub g-s2 "${S[1]}"
check "share 2: 2 of 3 (the typos and the duplicates kept the progress)" 'progress_is true 2'
sub g-os3 "${OS[2]}"
check "a share of another split of the same key: 422 invalid_share, refused alone (progress kept)" 'is 422 invalid_share && grep -q "another split" <<<"$B"'
SPLIT_S=$(cut -d- -f2 <<<"${S[0]}")
sub g-s-forged3 "$(py forge 3 3 "$SPLIT_S")"
check "a forged share 3 of the custodians' own split completes a wrong set: 422 unseal_failed, progress reset" 'is 422 unseal_failed && grep -q reset <<<"$B"'
sub g-garbage "srs1-zz"
check "\"srs1-zz\": 422 invalid_share (malformed)" 'is 422 invalid_share'
sub g-long "srs1-$(head -c 3000 /dev/zero | tr '\0' 'f')"
check "a 3 KB share: 422 invalid_share" 'is 422 invalid_share'
SRC=127.0.0.42
sub g-f1 "${F[0]}"; a=$PROG
sub g-f2 "${F[1]}"; b=$PROG
sub g-f3 "${F[2]}"
check "three shares of another key: 1, 2, then 422 unseal_failed (not this vault's key)" '[ "$a $b" = "1 2" ] && is 422 unseal_failed && grep -q "do not rebuild" <<<"$B"'
req g-f-ready GET /readyz
check "...and the instance is still sealed" 'is 503 not_ready'
sub g-s1-after "${S[0]}"
check "share 1 afterwards: 1 of 3 (the wrong set reset everything)" 'progress_is true 1'
SRC=127.0.0.43
FORGED=$(py forge 16 1)
sub g-forged "$FORGED"
check "a forged share of a split of its own (correct checksum): 422 invalid_share, refused alone" 'is 422 invalid_share'
sub g-s2-after-forged "${S[1]}"
check "share 2 after it: 2 of 3 (the forgery undid nothing)" 'progress_is true 2'
sub g-s2-reset "$(py forge 3 3 "$SPLIT_S")"
note "one who knows the split id (printed in every share) can still complete a set with a forged share and reset it: ($ST $CODE)"
FORGED2=$(py forge 16 0)
sub g-zero "$FORGED2"
check "a forged share of index 00 (its checksum right): 422 invalid_share" 'is 422 invalid_share'
SRC=127.0.0.44
BASE=$URLB
sub g-b-s1 "${S[0]}"
check "B (started for threshold 3): share 1, 1 of 3" 'progress_is true 1 && [ "$THR" = 3 ]'
sub g-b-t2 "${T2[1]}"
check "B: a share of a 2-of-3 split of the same key: 422 invalid_share (another threshold)" 'is 422 invalid_share && grep -q "2-of-N" <<<"$B"'
sub g-b-s2 "${S[1]}"
check "B: share 2: 2 of 3 (the other threshold's share kept the progress)" 'progress_is true 2'
BASE=$URLA

# --- 5. The throttle -------------------------------------------------------------------------
echo "== 5. throttle"
SRC=127.0.0.50
codes=""
for i in $(seq 15); do sub "flood-$i" "srs1-guess-$i"; codes="$codes $ST"; done
RA=$(hdr retry-after)
check "15 submissions in a row from one source: 10 answered 422, then 429 rate_limited with Retry-After ($RA):$codes" \
  '[ "$codes" = "$(printf " 422%.0s" $(seq 10))$(printf " 429%.0s" $(seq 5))" ] && is 429 rate_limited && [ -n "$RA" ] && [ "$RA" -ge 1 ] && [ "$RA" -le 60 ]'
sub flood-xff "${S[1]}" -H 'X-Forwarded-For: 198.51.100.7'
check "X-Forwarded-For does not lift it, and a real share from that source is not taken: 429" 'is 429 rate_limited'
SRC=127.0.0.51
sub flood-other "${S[1]}"
check "another source: share 2 is 1 of 3 (the throttled share did nothing)" 'progress_is true 1'
sub flood-forged3 "$(py forge 3 3 "$SPLIT_S")"
sub flood-reset "$(py forge 3 4 "$SPLIT_S")"
check "(two forged shares of the split complete a wrong set and reset before the race)" 'is 422 unseal_failed'

# --- 6. M shares at once -----------------------------------------------------------------------
echo "== 6. three shares at once"
items() { local i=0 s; printf '['; for s in "$@"; do
  [ $i -gt 0 ] && printf ','; jq -nc --arg src "127.0.0.$((RSRC + i))" --arg s "$s" '[$src, ({share: $s} | tojson)]'; i=$((i + 1))
done; printf ']'; }
RSRC=61; R=$(py par "$PORT" "$(items "${S[1]}" "${S[3]}" "${S[4]}")" "$W/out/race3-")
check "shares 2, 4 and 5 at once: exactly one answer unsealed (false 3), the others 1 and 2 of 3: $(tr '\n' ',' <<<"$R")" \
  '[ "$(grep -c "^200 false 3 " <<<"$R")" = 1 ] && [ "$(grep -c "^200 true [12] " <<<"$R")" = 2 ] && [ "$(awk "{print \$3}" <<<"$R" | sort | tr "\n" " ")" = "1 2 3 " ]'
check "A serves (readyz 200)" 'ready "$URLA"'
req b-still GET /readyz; BASE=$URLB; req b-still GET /readyz; BASE=$URLA
check "B, on the same database, is still sealed" 'is 503 not_ready'
SRC=127.0.0.64
sub late-s1 "${S[0]}"
check "a late custodian's share: 200 sealed false, progress 0, nothing taken" 'progress_is false 0 && [ "$(jq -r .threshold <<<"$B")" = null ]'
T1=$(tokenize "$URLA" "$TOK" "$(py pan $((T0 + 1)))")
V0=$(reveal "$URLA" "$DET" "$TOKEN0")
check "after the unseal: a new card tokenizes, the card from before the seal reads back through a checkout grant" '[ -n "$T1" ] && [ "$V0" = "$PAN0" ]'

# --- 7. strongroom unseal (instance B) -----------------------------------------------------------
echo "== 7. strongroom unseal"
cli() { local name=$1 share=$2; shift 2; OUT=$(printf '%s\n' "$share" | $BIN unseal "$@" 2>&1); RC=$?; printf '%s\n' "$OUT" >"$W/out/$name"; }
cli cli-typo "$(flip "${S[2]}")" --url "$URLB"
check "a mistyped share: refused, \"mistyped\", \"nothing was sent\"" 'clean_refusal && grep -q mistyped <<<"$OUT" && grep -q "nothing was sent" <<<"$OUT"'
cli cli-junk "hello" --url "$URLB"
check "not a share at all: refused, nothing was sent" 'clean_refusal && grep -q "nothing was sent" <<<"$OUT"'
cli cli-https "${S[2]}" --url "https://127.0.0.1:$PORT2"
check "https without --cacert: refused before sending" 'clean_refusal && grep -q -- --cacert <<<"$OUT"'
cli cli-ftp "${S[2]}" --url "ftp://127.0.0.1:$PORT2"
check "a URL that is neither http nor https: refused" 'clean_refusal'
cli cli-dup "${S[0]}" --url "$URLB"
check "share 1 again: the vault's refusal (invalid_share) is reported, exit nonzero" 'clean_refusal && grep -q invalid_share <<<"$OUT"'
cli cli-s3 "${S[2]}" --url "$URLB"
check "share 3: \"unsealed\" ($(head -n1 <<<"$OUT" | cut -c1-60))" '[ $RC = 0 ] && grep -q unsealed <<<"$OUT" && ready "$URLB"'
cli cli-late "${S[3]}" --url "$URLB"
check "share 4 to the unsealed B: \"not sealed: nothing was taken\"" '[ $RC = 0 ] && grep -q "nothing was taken" <<<"$OUT"'

# --- 8. Seal and unseal again ------------------------------------------------------------------
echo "== 8. seal"
SRC=127.0.0.2
req seal-anon POST /v1/sys/seal
check "POST /v1/sys/seal without a key: 401" '[ "$ST" = 401 ]'
req seal-tok POST /v1/sys/seal -H "$(key "$TOK")"
check "...by a tokenizer: 403 forbidden" 'is 403 forbidden'
req seal-aud POST /v1/sys/seal -H "$(key "$AUD")"
check "...by an auditor: 403 forbidden" 'is 403 forbidden'
req seal-get GET /v1/sys/seal -H "$(key "$ADM")"
check "GET /v1/sys/seal by the admin: 405, still serving" '[ "$ST" = 405 ] && ready "$URLA"'
req seal-adm POST /v1/sys/seal -H "$(key "$ADM")"
check "...by the admin: 202 {\"sealed\": true}" '[ "$ST" = 202 ] && [ "$(jq -r .sealed <<<"$B")" = true ]'
check "then the instance is sealed: 503 sealed on the API, readyz 503 sealed" 'sealed_now "$URLA" && [ "$(curl -s "$URLA/readyz" | jq -r .reason)" = sealed ]'
req seal-again POST /v1/sys/seal -H "$(key "$ADM")"
check "the admin's key now gets 503 sealed too" 'is 503 sealed'
check "the log says it was sealed by an admin and waits again" 'grep -q "strongroom sealed by an admin" "$W/log/A.out" && [ "$(grep -c "\"message\":\"strongroom sealed:" "$W/log/A.out")" = 2 ]'
check "B serves on, unaffected" 'ready "$URLB"'
SRC=127.0.0.71
sub re-s3 "${S[2]}"; a=$PROG
sub re-s4 "${S[3]}"; b=$PROG
sub re-s5 "${S[4]}"
check "unsealed again with shares 3, 4, 5 (fresh progress: $a, $b, then sealed $SEALED)" '[ "$a $b" = "1 2" ] && progress_is false 3 && ready "$URLA"'
V=$(reveal "$URLA" "$DET" "$T1")
check "the card tokenized before the seal reads back" '[ -n "$V" ]'

# --- 9. Two complete sets racing -------------------------------------------------------------------
echo "== 9. two complete sets at once (shares 1-3 and 4-6 of a 3-of-6 split)"
SRC=127.0.0.2
req seal-2 POST /v1/sys/seal -H "$(key "$ADM")"
sealed_now "$URLA"
UN_BEFORE=$(psql "$DATABASE_URL" -qtAc "select count(*) from audit_events where action = 'unseal'")
# Two custodian groups, each with a complete set of one 6-share split (shares 1-3 and 4-6).
RSRC=81; R=$(py par "$PORT" "$(items "${S6[@]}")" "$W/out/race6-")
sleep 0.5
UN_AFTER=$(psql "$DATABASE_URL" -qtAc "select count(*) from audit_events where action = 'unseal'")
check "no 5xx, no dropped connection: $(tr '\n' ',' <<<"$R")" '! grep -qE "^(0|5[0-9][0-9]) " <<<"$R"'
check "the instance ends unsealed" 'ready "$URLA"'
check "exactly one answer says it unsealed (false 3)" '[ "$(grep -c "^200 false 3 " <<<"$R")" = 1 ]'
check "exactly two answers say sealed (1 and 2 of 3); the three others are told it is unsealed, progress 0" \
  '[ "$(grep -c "^200 true " <<<"$R")" = 2 ] && [ "$(grep -c "^200 false 0 " <<<"$R")" = 3 ]'
check "the trail has exactly one unseal for this one unsealing ($UN_BEFORE before, $UN_AFTER after)" '[ $((UN_AFTER - UN_BEFORE)) = 1 ]'

# --- 10. The trail -----------------------------------------------------------------------------
echo "== 10. the trail (as the auditor on A)"
EP=$(audit "scope=system&action=unseal.progress"); EF=$(audit "scope=system&action=unseal.failed")
EU=$(audit "scope=system&action=unseal"); ES=$(audit "action=seal")
check "unseal.progress: every record names a slot and the progress, a source, no actor" \
  '[ "$(jq length <<<"$EP")" -ge 15 ] && [ "$(jq "all(.detail | test(\"^slot=[0-9]+ progress=[0-9]+/[0-9]+$\"))" <<<"$EP")" = true ] && [ "$(jq "all(.source != null and .actor == null)" <<<"$EP")" = true ]'
check "unseal.progress: the CLI's good share from 127.0.0.1 (slot=3) is there" '[ "$(jq "[.[] | select(.source == \"127.0.0.1\" and (.detail | startswith(\"slot=3 \")))] | length" <<<"$EP")" = 1 ]'
REASONS=$(jq -r '[.[] | .detail | sub(" progress=.*"; "")] | unique | join(", ")' <<<"$EF")
has_reasons() { local r; for r in "$@"; do jq -e --arg r "$r" 'any(.detail | startswith($r))' <<<"$EF" >/dev/null || return 1; done; }
check "unseal.failed: mistyped, malformed, slot=1 again, other_split, wrong_set; reset, other_threshold ($REASONS)" \
  'has_reasons mistyped malformed "slot=1 again" other_split "wrong_set; reset" other_threshold'
check "unseal.failed: codes invalid_share / unseal_failed only, outcome denied" '[ "$(jq "all((.code == \"invalid_share\" or .code == \"unseal_failed\") and .outcome == \"denied\")" <<<"$EF")" = true ]'
check "the typos that strongroom unseal named were never sent: no mistyped or malformed record from 127.0.0.1, only its duplicate" '[ "$(jq -c "[.[] | select(.source == \"127.0.0.1\") | .detail]" <<<"$EF")" = "[\"slot=1 again progress=2\"]" ]'
check "throttled submissions are not recorded as shares (10 of 15 from 127.0.0.50)" '[ "$(jq "[.[] | select(.source == \"127.0.0.50\")] | length" <<<"$EF")" = 10 ]'
check "unseal: $(jq length <<<"$EU") records (A three times, B once, and any extra of section 9), each master=$FPR" '[ "$(jq length <<<"$EU")" -ge 4 ] && [ "$(jq --arg f "master=$FPR" "all(.detail == \$f and .outcome == \"success\")" <<<"$EU")" = true ]'
check "seal (acme): two by the admin, success; two refused (tokenizer, auditor)" \
  '[ "$(jq "[.[] | select(.outcome == \"success\")] | length" <<<"$ES")" = 2 ] && [ "$(jq "[.[] | select(.outcome == \"denied\")] | length" <<<"$ES")" = 2 ]'
run audit-verify env STRONGROOM_MASTER_KEY="$KEY" $BIN audit verify
check "audit verify (the sealed phases' records chained too): $(grep -o 'audit trail.*' <<<"$OUT" | head -n1 | cut -c1-80)" '[ $RC = 0 ] && grep -q verified <<<"$OUT"'

# --- 11. Signals between phases -------------------------------------------------------------------
echo "== 11. SIGTERM between phases"
BASE=$URLB; SRC=127.0.0.2
req seal-globex POST /v1/sys/seal -H "$(key "$GADM")"
note "globex's admin (another tenant) seals B, which serves acme too: $ST $CODE (an instance-wide act open to every tenant's admin)"
kill "$PB"
check "SIGTERM right after that seal: B exits within 5 s" 'gone_within 5 "$PB"'
BASE=$URLA
req seal-3 POST /v1/sys/seal -H "$(key "$ADM")"; sealed_now "$URLA"
SRC=127.0.0.91
sub sig-s1 "${S[0]}"; sub sig-s2 "${S[1]}"; sub sig-s3 "${S[2]}"
kill "$PA"
check "SIGTERM right after the share that unseals A ($SEALED $PROG): A exits within 5 s" 'gone_within 5 "$PA"'
if kill -0 "$PA" 2>/dev/null; then
  note "A after that SIGTERM: readyz $(curl -s -o /dev/null -w '%{http_code}' "$URLA/readyz"), $(curl -s "$URLA/v1/tokens" -H "$(key "$TOK")" "${JSON[@]}" -d "{\"value\":\"$(py pan 77)\"}" -o /dev/null -w 'tokenize %{http_code}')"
fi
for p in $PA $PB; do stop "$p"; done

# --- 12. Leaks ---------------------------------------------------------------------------------
echo "== 12. leaks"
cat "$W"/setup/{S,OS,F,T2} >"$W/all-shares"; echo "$FORGED" >>"$W/all-shares"; echo "$FORGED2" >>"$W/all-shares"
# Each share's 64-hex body in halves (a typo changes only one), and the whole share.
awk -F- '{print substr($5, 1, 32); print substr($5, 33, 32); print $0}' "$W/all-shares" >"$W/share-parts"
OUTS=$(ls "$W"/out | wc -l)
check "no share or half of a share body (any case) in any answer, header or CLI output ($OUTS files)" '! cat "$W"/out/* | grep -qiF -f "$W/share-parts"'
check "none in the servers' stdout or stderr ($(cat "$W"/log/* | wc -l) lines)" '! cat "$W"/log/* | grep -qiF -f "$W/share-parts"'
check "none in the audit table (any column)" '! psql "$DATABASE_URL" -qtAc "select a::text from audit_events a" | grep -qiF -f "$W/share-parts"'
check "the master key in no answer, output or log" '! cat "$W"/out/* "$W"/log/* | grep -qF "$KEY"'
check "no panic, no 5xx in the logs" '! cat "$W"/log/* | grep -qiE "panicked|stack backtrace|\"status\":5[0-9][0-9]"'
check "no 5xx answer but 503 anywhere" '! grep -hE "^HTTP/1.1 5" "$W"/out/*.headers | grep -qv "^HTTP/1.1 503" && ! cat "$W"/out/*.body 2>/dev/null | grep -q "\"code\":\"internal\""'

# --- 13. The master key in an HSM (SoftHSM2) -----------------------------------------------------------
echo "== 13. HSM"
if ! command -v softhsm2-util >/dev/null || [ ! -e "$MODULE" ]; then
  echo "no SoftHSM2 ($MODULE)"; exit 1
fi
export SOFTHSM2_CONF=$W/hsm/softhsm2.conf
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$W/hsm/tokens" >"$SOFTHSM2_CONF"
PIN=$((RANDOM % 9 + 1))$(printf '%07d' $((RANDOM * RANDOM % 10000000)))
WRONGPIN=$((PIN + 1357))
LABEL=t$$
softhsm2-util --init-token --free --label "$LABEL" --pin "$PIN" --so-pin 97531864 >/dev/null || { echo "softhsm2-util failed"; exit 1; }
SPEC="module=$MODULE;token=$LABEL;label=master"
run hsm-keygen env STRONGROOM_PKCS11_PIN="$PIN" $BIN keygen --pkcs11 "$SPEC"
check "keygen --pkcs11: a non-extractable AES-256 key made in the token" '[ $RC = 0 ] && grep -q non-extractable <<<"$OUT"'
run hsm-keygen-again env STRONGROOM_PKCS11_PIN="$PIN" $BIN keygen --pkcs11 "$SPEC"
check "keygen --pkcs11 again with the same label: refused (already has a key)" 'clean_refusal && grep -q "already has a key" <<<"$OUT"'
run hsm-wrong-pin env STRONGROOM_PKCS11_PIN="$WRONGPIN" $BIN keygen --pkcs11 "module=$MODULE;token=$LABEL;label=other"
check "a wrong PIN: refused (cannot log in), the PIN not echoed" 'clean_refusal && grep -q "cannot log in" <<<"$OUT" && ! grep -qF "$WRONGPIN" <<<"$OUT"'
run hsm-no-pin $BIN keygen --pkcs11 "module=$MODULE;token=$LABEL;label=other"
check "no PIN: refused, names STRONGROOM_PKCS11_PIN" 'clean_refusal && grep -q STRONGROOM_PKCS11_PIN <<<"$OUT"'
run hsm-pin-in-spec env STRONGROOM_PKCS11_PIN="$PIN" $BIN keygen --pkcs11 "module=$MODULE;token=$LABEL;label=x;pin=$WRONGPIN"
check "a spec with a pin= part: refused, the value not echoed" 'clean_refusal && ! grep -qF "$WRONGPIN" <<<"$OUT"'
run hsm-no-token env STRONGROOM_PKCS11_PIN="$PIN" $BIN keygen --pkcs11 "module=$MODULE;token=nosuch$$;label=x"
check "an unknown token: refused" 'clean_refusal && grep -q "no PKCS#11 token" <<<"$OUT"'

psql "$ADMINDB" -qtAc "create database $DBH" >/dev/null
export DATABASE_URL=${ADMINDB%/*}/$DBH
KE=$($BIN keygen); K2=$($BIN keygen)
STRONGROOM_MASTER_KEY=$KE $BIN migrate >/dev/null
mkh() { STRONGROOM_MASTER_KEY=$KE $BIN principal create --tenant acme --name "$1" --role "$2" --json | pkey; }
start H-env "$PORT3" STRONGROOM_MASTER_KEY="$KE" -- || { echo "H-env did not start"; exit 1; }; P=$SP
HTOK=$(mkh checkout tokenizer); HDET=$(mkh payments detokenizer)
HPAN1=$(py pan $((T0 + 7))); HT1=$(tokenize "$URLH" "$HTOK" "$HPAN1")
stop "$P"
check "a second vault under an environment key: a card tokenized" '[ -n "$HT1" ]'
run rewrap-to-hsm env STRONGROOM_MASTER_KEY="$KE" STRONGROOM_NEW_MASTER_KEY_PKCS11="$SPEC" STRONGROOM_PKCS11_PIN="$PIN" $BIN keys rewrap
check "keys rewrap environment -> HSM: done" '[ $RC = 0 ] && grep -q rewrapped <<<"$OUT"'
run rewrap-both env STRONGROOM_MASTER_KEY="$KE" STRONGROOM_NEW_MASTER_KEY="$K2" STRONGROOM_NEW_MASTER_KEY_PKCS11="$SPEC" STRONGROOM_PKCS11_PIN="$PIN" $BIN keys rewrap
check "keys rewrap with both new keys set: refused (keep one)" 'clean_refusal && grep -q "keep one" <<<"$OUT"'
run serve-old-env env STRONGROOM_MASTER_KEY="$KE" timeout 20 $BIN serve --listen "127.0.0.1:$PORT3" --policy-file "$W/policies.toml"
check "serve with the old environment key afterwards: refused" 'clean_refusal && ! grep -q "strongroom serving" <<<"$OUT"'
start H-hsm "$PORT3" STRONGROOM_PKCS11_PIN="$PIN" -- --master-key-pkcs11 "$SPEC"; P=$SP
check "serve --master-key-pkcs11: serving" 'grep -q "strongroom serving" "$W/log/H-hsm.out" && ready "$URLH"'
HPAN2=$(py pan $((T0 + 8))); HT2=$(tokenize "$URLH" "$HTOK" "$HPAN2"); HV1=$(reveal "$URLH" "$HDET" "$HT1")
check "under the HSM key: a new card tokenizes, the card from before the rewrap reads back" '[ -n "$HT2" ] && [ "$HV1" = "$HPAN1" ]'
stop "$P"
run hsm-status env STRONGROOM_MASTER_KEY_PKCS11="$SPEC" STRONGROOM_PKCS11_PIN="$PIN" $BIN keys status --json
check "keys status --json: source pkcs11, extractable false, opens_stored_keys true" \
  '[ $RC = 0 ] && [ "$(sed -n "/^{/,\$p" <<<"$OUT" | jq -r ".master_key | \"\(.source) \(.extractable) \(.opens_stored_keys)\"")" = "pkcs11 (STRONGROOM_MASTER_KEY_PKCS11) false true" ]'
if command -v pkcs11-tool >/dev/null; then
  run p11-list pkcs11-tool --module "$MODULE" --token-label "$LABEL" --login --pin "$PIN" --list-objects --type secrkey
  check "pkcs11-tool lists the key as sensitive and never extractable" 'grep -q "never extractable" <<<"$OUT" && grep -q "sensitive" <<<"$OUT"'
  rm -f "$W/keyout"
  run p11-read pkcs11-tool --module "$MODULE" --token-label "$LABEL" --login --pin "$PIN" --read-object --type secrkey --label master -o "$W/keyout"
  check "pkcs11-tool --read-object of the key, with the PIN: refused, nothing written" '[ $RC -ne 0 ] && [ ! -s "$W/keyout" ]'
  note "the key's usages as the token reports them: $(grep -i usage <<<"$(cat "$W/out/p11-list")" | sed 's/^ *//')"
else
  note "pkcs11-tool is not installed: the key's value is not read with it (apt-get install opensc to try)"
fi
run both env STRONGROOM_MASTER_KEY="$K2" STRONGROOM_MASTER_KEY_PKCS11="$SPEC" STRONGROOM_PKCS11_PIN="$PIN" timeout 20 $BIN serve --listen "127.0.0.1:$PORT3" --policy-file "$W/policies.toml"
check "serve with both an environment key and an HSM key: refused (keep one)" 'clean_refusal && grep -q "keep one" <<<"$OUT"'
run both-flag env STRONGROOM_MASTER_KEY="$K2" STRONGROOM_PKCS11_PIN="$PIN" timeout 20 $BIN serve --master-key-pkcs11 "$SPEC" --listen "127.0.0.1:$PORT3" --policy-file "$W/policies.toml"
check "...and with the flag instead of the variable: refused" 'clean_refusal && grep -q "keep one" <<<"$OUT"'
run both-status env STRONGROOM_MASTER_KEY="$K2" STRONGROOM_MASTER_KEY_PKCS11="$SPEC" STRONGROOM_PKCS11_PIN="$PIN" $BIN keys status --json
check "keys status with both: refused" 'clean_refusal && grep -q "keep one" <<<"$OUT"'
run hsm-split env STRONGROOM_MASTER_KEY_PKCS11="$SPEC" STRONGROOM_PKCS11_PIN="$PIN" $BIN keys split --shares 3 --threshold 2
check "keys split of an HSM key (no key in the environment): refused, no share" 'clean_refusal && ! grep -q srs1 <<<"$OUT"'
run rewrap-to-env env STRONGROOM_MASTER_KEY_PKCS11="$SPEC" STRONGROOM_NEW_MASTER_KEY="$K2" STRONGROOM_PKCS11_PIN="$PIN" $BIN keys rewrap
check "keys rewrap HSM -> environment: done" '[ $RC = 0 ] && grep -q rewrapped <<<"$OUT"'
run serve-old-hsm env STRONGROOM_PKCS11_PIN="$PIN" timeout 20 $BIN serve --master-key-pkcs11 "$SPEC" --listen "127.0.0.1:$PORT3" --policy-file "$W/policies.toml"
check "serve with the HSM key afterwards: refused" 'clean_refusal && ! grep -q "strongroom serving" <<<"$OUT"'
start H-env2 "$PORT3" STRONGROOM_MASTER_KEY="$K2" --; P=$SP
HV1=$(reveal "$URLH" "$HDET" "$HT1"); HV2=$(reveal "$URLH" "$HDET" "$HT2")
check "under the new environment key: both cards read back (env -> HSM -> env)" '[ "$HV1" = "$HPAN1" ] && [ "$HV2" = "$HPAN2" ]'
stop "$P"
run hsm-audit psql "$DATABASE_URL" -qtAc "select detail from audit_events where action = 'key.rewrap' and outcome = 'success' order by id"
check "both rewraps recorded with the kinds of key (environment -> pkcs11, pkcs11 -> environment)" \
  'grep -q "from_kind=environment to_kind=pkcs11" <<<"$(sed -n 1p <<<"$OUT")" && grep -q "from_kind=pkcs11 to_kind=environment" <<<"$(sed -n 2p <<<"$OUT")"'
check "the PIN (right or wrong) and the environment keys in no output or log" '! cat "$W"/out/hsm-* "$W"/out/rewrap-* "$W"/out/serve-* "$W"/out/both* "$W"/log/H-* | grep -qF -e "$PIN" -e "$WRONGPIN" -e "$KE" -e "$K2"'

finish
