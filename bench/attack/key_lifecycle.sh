#!/usr/bin/env bash
# An outsider's attack on the key lifecycle of a release build: re-encryption killed halfway
# under load, concurrent re-encryptions and destroys, tenant shred (refusals, six at once under
# load, what is left afterwards), master-key rewrap (refusals, the old key refused afterwards, a
# rewrap racing a running server's new tenant), signing-key rotation, and no master key, wrapped
# key or card number in any output or log. Uses its own database on the local PostgreSQL, a
# server on loopback, and a trigger of its own on `tokens` to count the rows re-encryption moves.
#
#   bench/attack/key_lifecycle.sh        # BIN=/path/to/strongroom for another build; KEEP=1 keeps $W
set -u
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release/strongroom}
PORT=${PORT:-18778}
URL=http://127.0.0.1:$PORT
. .ci/postgres.sh >/dev/null
ADMIN=$STRONGROOM_TEST_DATABASE_URL
DB=strongroom_lifecycleattack_$$
W=$(mktemp -d /tmp/lifecycle-attack.XXXXXX)
mkdir -p "$W/out"
SERVER=""; BG=""
cleanup() {
  touch "$W/stop" "$W/stop1" "$W/stop2" "$W/stop3"
  for p in $BG; do kill "$p" 2>/dev/null; done
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
  psql "$ADMIN" -qtAc "drop database if exists $DB with (force)" >/dev/null 2>&1
  [ "${KEEP:-0}" = 1 ] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT
psql "$ADMIN" -qtAc "create database $DB" >/dev/null
export DATABASE_URL=${ADMIN%/*}/$DB
unset STRONGROOM_NEW_MASTER_KEY STRONGROOM_AUDIT_CHECKPOINT_FILE
T0=$(date +%s)

fail=0
check() { if eval "$2"; then echo "  ok    $1"; else echo "  FAIL  $1"; fail=1; fi; }
note() { echo "  info  $*"; }
q() { psql "$DATABASE_URL" -qtAc "$1"; }
# run NAME CMD...: stdout and stderr together in $OUT and $W/out/NAME (grepped for leaks), exit in $RC.
run() { local name=$1; shift; OUT=$("$@" 2>&1 </dev/null); RC=$?; printf '%s\n' "$OUT" >"$W/out/$name"; }
# A refusal is clean: nonzero, not a panic (101) or a signal, no backtrace or internal error.
clean_refusal() { [ "$RC" -ne 0 ] && [ "$RC" -ne 101 ] && [ "$RC" -lt 128 ] && ! grep -qiE 'panick|backtrace|internal|RUST_BACKTRACE' <<<"$OUT"; }
first_line() { head -n1 <<<"$OUT" | cut -c1-150; }
SRVN=0
start_server() { # KEY: serve on $PORT under KEY, log to $W/server-N.log
  SRVN=$((SRVN + 1))
  STRONGROOM_MASTER_KEY=$1 $BIN serve --listen 127.0.0.1:$PORT --policy-file "$W/policies.toml" \
    --rate-limit-per-second 0 --tokenize-bucket-budget 1000000 >"$W/server-$SRVN.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 150); do curl -fs "$URL/readyz" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "server did not start: $(tail -n3 "$W/server-$SRVN.log")"; return 1
}
stop_server() { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; SERVER=""; }

cat >"$W/h.py" <<'PY'
import base64, http.client, json, random, sys, threading, time, urllib.parse

def pan(rng):
    prefix = rng.choice(["4", "51", "52", "53", "54", "55", "2221", "6011"])
    body = prefix + "".join(str(rng.randrange(10)) for _ in range(15 - len(prefix)))
    s = 0
    for i, d in enumerate(reversed(body)):
        d = int(d)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        s += d
    return body + str((10 - s % 10) % 10)

class Client:
    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port
        self.conn = None
    def req(self, method, path, key, body=None, grant=None):
        headers = {"Authorization": "Bearer " + key}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body)
        if grant:
            headers["X-Access-Grant"] = grant
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
                try:
                    return r.status, json.loads(raw) if raw else None
                except ValueError:
                    return r.status, raw.decode(errors="replace")
            except (OSError, http.client.HTTPException) as e:
                self.conn.close(); self.conn = None
                err = str(e)
        return 0, err

def read_pairs(path):
    out = {}
    for line in open(path):
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = parts[1]
    return out

def tokenize(url, key, n, out, seed):
    c, rng, made, errors = Client(url), random.Random(int(seed)), 0, {}
    with open(out, "a") as f:
        left = int(n)
        while left > 0:
            pans = [pan(rng) for _ in range(min(1000, left))]
            left -= len(pans)
            st, body = c.req("POST", "/v1/tokens/batch", key, {"items": [{"value": p} for p in pans]})
            if st != 200:
                errors[str(st)] = errors.get(str(st), 0) + len(pans); continue
            for p, item in zip(pans, body["results"] if isinstance(body, dict) and "results" in body else body.get("items", [])):
                if "token" in item:
                    f.write(f"{item['token']} {p}\n"); made += 1
                else:
                    code = item.get("error", {}).get("code", "?")
                    errors[code] = errors.get(code, 0) + 1
    print(f"{made} {json.dumps(errors)}")

def one(url, key, seed):
    rng = random.Random(int(seed))
    p = pan(rng)
    st, body = Client(url).req("POST", "/v1/tokens", key, {"value": p})
    print(f"{st} {body.get('token', '-') if isinstance(body, dict) else '-'} {p}")

def grant(url, key):
    st, body = Client(url).req("POST", "/v1/access-requests", key, {
        "any_token": True, "purpose": "payment_authorization", "reason": "lifecycle attack",
        "duration_seconds": 3600, "max_uses": 1000000})
    if not isinstance(body, dict) or not body.get("grant"):
        print(f"no grant: {st} {body}", file=sys.stderr); sys.exit(1)
    print(body["grant"])

def kid(jwt):
    h = jwt.split(".")[0]
    print(json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))["kid"])

def live_and_dead(files):
    live, dead = {}, set()
    for f in files:
        if f.endswith(".json"):
            d = json.load(open(f))
            live.update(dict(d["created"]))
            dead.update(d["deleted"])
        else:
            live.update(read_pairs(f))
    for t in dead:
        live.pop(t, None)
    return live, dead

def verify(url, key, grant, deadmax, *files):
    """Every live token detokenizes to its PAN; DEADMAX deleted ones answer 404 (each a miss:
    more than 50 misses in 10 minutes throttle the principal, so probe with a principal of
    its own)."""
    c = Client(url)
    live, dead = live_and_dead(files)
    items, bad, codes = list(live.items()), [], {}
    for i in range(0, len(items), 100):
        chunk = items[i:i + 100]
        st, body = c.req("POST", "/v1/detokenize", key, {"tokens": [t for t, _ in chunk]}, grant)
        if st != 200:
            codes[str(st)] = codes.get(str(st), 0) + 1
            # find the culprit(s) one by one
            for t, p in chunk:
                s1, b1 = c.req("POST", "/v1/detokenize", key, {"tokens": [t]}, grant)
                if s1 != 200:
                    bad.append(f"{t}:{s1}:{b1.get('code') if isinstance(b1, dict) else b1}")
                elif b1["data"][0]["value"] != p:
                    bad.append(f"{t}:wrong value")
            continue
        for (t, p), d in zip(chunk, body["data"]):
            if d.get("token") != t or d.get("value") != p:
                bad.append(f"{t}:wrong value")
    dcodes = {}
    for t in sorted(dead)[:int(deadmax)]:
        st, body = c.req("POST", "/v1/detokenize", key, {"tokens": [t]}, grant)
        if st != 404:
            bad.append(f"deleted {t}:{st}")
        dcodes[str(st)] = dcodes.get(str(st), 0) + 1
    print(f"live={len(live)} ok={len(live) - len([b for b in bad if not b.startswith('deleted')])} deleted={len(dead)} (probed {min(int(deadmax), len(dead))}: {json.dumps(dcodes)}) bad={len(bad)} {' '.join(bad[:5])}")
    sys.exit(1 if bad or not live else 0)

def load(url, name, tok, det, grant, stop, out, seed, mode, *initial):
    """Until STOP exists: tokenize one new PAN; in mode full also delete one token and
    detokenize five. Writes created, deleted, answer codes and 5xx bodies to OUT."""
    import os
    pool = list(live_and_dead(initial)[0].items())
    lock = threading.Lock()
    created, deleted, codes, fivexx, wrong = [], [], {}, [], []
    def count(op, st, body):
        with lock:
            codes[f"{op}:{st}"] = codes.get(f"{op}:{st}", 0) + 1
            if st >= 500 or st == 0:
                fivexx.append(f"{op}:{st}:{body}"[:300])
    def worker(i):
        c, rng = Client(url), random.Random(int(seed) * 100 + i)
        while not os.path.exists(stop):
            p = pan(rng)
            st, body = c.req("POST", "/v1/tokens", tok, {"value": p})
            count("tokenize", st, body)
            if st == 401:
                break  # the key is gone (shred): a client stops rather than flood the source limiter
            if st in (200, 201):
                with lock:
                    created.append((body["token"], p)); pool.append((body["token"], p))
            else:
                time.sleep(0.01)
            if mode != "full":
                continue
            with lock:
                victim = pool.pop(rng.randrange(len(pool))) if len(pool) > 50 and rng.random() < 0.5 else None
            if victim:
                st, body = c.req("DELETE", "/v1/tokens/" + victim[0], tok)
                count("delete", st, body)
                if st == 204:
                    with lock: deleted.append(victim[0])
            with lock:
                sample = rng.sample(pool, 5) if len(pool) >= 5 else []
            if sample:
                st, body = c.req("POST", "/v1/detokenize", det, {"tokens": [t for t, _ in sample]}, grant)
                count("detokenize", st, body)
                if st == 200:
                    for (t, p), d in zip(sample, body["data"]):
                        if d.get("value") != p:
                            with lock: wrong.append(t)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads: t.start()
    for t in threads: t.join()
    json.dump({"created": created, "deleted": deleted, "codes": codes, "fivexx": fivexx[:20],
               "n5xx": len(fivexx), "wrong": wrong}, open(out, "w"))

def summary(path):
    d = json.load(open(path))
    print(f"codes={json.dumps(d['codes'], sort_keys=True)} 5xx/errors={d['n5xx']} wrong_values={len(d['wrong'])} {' | '.join(d['fivexx'][:2])}")
    sys.exit(1 if d["n5xx"] or d["wrong"] else 0)

def firsts(url, delay_ms, out, *keys):
    """Each tenant's first card at once-ish (thread i waits i*delay): the tenant key is made."""
    results = {}
    def go(i, key):
        time.sleep(i * int(delay_ms) / 1000)
        p = pan(random.Random(9000 + i + int(time.time())))
        st, body = Client(url).req("POST", "/v1/tokens", key, {"value": p})
        results[i] = (st, body.get("token") if isinstance(body, dict) and "token" in body else None,
                      body.get("code") if isinstance(body, dict) else str(body)[:80], p)
    ts = [threading.Thread(target=go, args=(i, k)) for i, k in enumerate(keys)]
    for t in ts: t.start()
    for t in ts: t.join()
    with open(out, "w") as f:
        for i in range(len(keys)):
            st, token, code, p = results[i]
            f.write(f"{i} {st} {token or '-'} {code or '-'} {p}\n")

def pick(*files):
    print(next(iter(live_and_dead(files)[0])))

def jwks(url):
    st, body = Client(url).req("GET", "/.well-known/jwks.json", "-")
    print(" ".join(k["kid"] for k in body["keys"]))

getattr(sys.modules[__name__], sys.argv[1])(*sys.argv[2:])
PY
py() { python3 "$W/h.py" "$@"; }

# --- Setup ---------------------------------------------------------------------------------
KEY=$($BIN keygen); export STRONGROOM_MASTER_KEY=$KEY
echo "$KEY" >"$W/secrets"
$BIN migrate >/dev/null
pkey() { $BIN principal create --tenant "$1" --name "$2" "${@:3}" --json | sed -n 's/.*"key":"\([^"]*\)".*/\1/p'; }
AT=$(pkey acme tok --role tokenizer); AD=$(pkey acme det --role detokenizer)
GT=$(pkey globex tok --role tokenizer); GD=$(pkey globex det --role detokenizer)
# Probers of deleted tokens: each 404 is a miss, and 50 misses in 10 minutes throttle a principal.
AP=$(pkey acme probe --role detokenizer); GP=$(pkey globex probe --role detokenizer)
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
start_server "$KEY" || exit 1
# The attacker's own instrument: every change of a live row's data key version, logged.
q "create table attack_moves (token text, from_v int, to_v int);
   create function attack_log_move() returns trigger language plpgsql as \$\$ begin
     insert into attack_moves values (new.token, old.dek_version, new.dek_version); return null; end \$\$;
   create trigger attack_move after update of dek_version on tokens for each row
     when (old.dek_version is not null and new.dek_version is not null and old.dek_version <> new.dek_version)
     execute function attack_log_move();" >/dev/null
N=${N:-2000}
echo "setup: acme $(py tokenize "$URL" "$AT" "$N" "$W/acme0" 1), globex $(py tokenize "$URL" "$GT" "$N" "$W/globex0" 2) tokens (made, refusals)"
GA=$(py grant "$URL" "$AD"); GG=$(py grant "$URL" "$GD"); GAP=$(py grant "$URL" "$AP"); GGP=$(py grant "$URL" "$GP")
KID_OLD=$(py kid "$GG")
sealed_v() { q "select count(*) from tokens where dek_version = $1"; }
moved_sum() { q "select coalesce(sum(substring(detail from 'moved=([0-9]+)')::bigint), 0) from audit_events where action = 'key.reencrypt' and outcome = 'success'"; }

# --- 1. Re-encryption killed halfway under load, then finished; destroy -------------------
echo "== 1. re-encryption under load, SIGKILL halfway, destroy"
run rotate1 $BIN keys rotate
check "keys rotate: $(first_line)" '[ $RC -eq 0 ] && grep -q "data key v2 is active" <<<"$OUT"'
rm -f "$W/stop1"
py load "$URL" acme "$AT" "$AD" "$GA" "$W/stop1" "$W/load1-acme.json" 11 full "$W/acme0" & L1=$!
py load "$URL" globex "$GT" "$GD" "$GG" "$W/stop1" "$W/load1-globex.json" 12 full "$W/globex0" & L2=$!
BG="$L1 $L2"
sleep 1
BEFORE=$(sealed_v 1)
$BIN keys reencrypt --batch-size 50 >"$W/out/reencrypt-killed.stdout" 2>"$W/out/reencrypt-killed.stderr" & RP=$!
# ~0.3 s, and at least one batch committed, so that the kill lands halfway.
sleep 0.3; for _ in $(seq 100); do [ "$(q "select count(*) from attack_moves")" -gt 0 ] && break; sleep 0.05; done
kill -KILL $RP 2>/dev/null; wait $RP 2>/dev/null; KRC=$?
KMOVED=$(q "select count(*) from attack_moves"); KSUM=$(moved_sum)
note "SIGKILLed run (exit $KRC): $KMOVED of ~$BEFORE rows under v1 moved, records say $KSUM"
check "the killed run left whole batches only (moved $KMOVED = records $KSUM)" '[ "$KMOVED" -eq "$KSUM" ]'
S=$(date +%s.%N)
# Small batches: slower, so that the run lasts past the 2 s of its first progress line.
$BIN keys reencrypt --batch-size 2 >"$W/out/reencrypt-2.stdout" 2>"$W/out/reencrypt-2.stderr"; RC=$?
E=$(date +%s.%N)
R2OUT=$(cat "$W/out/reencrypt-2.stdout"); R2ERR=$(cat "$W/out/reencrypt-2.stderr")
R2S=$(awk -v a="$S" -v b="$E" 'BEGIN{printf "%.1f", b-a}'); R2P=$(tail -n +2 <<<"$R2ERR" | grep -c .)
note "second run, --batch-size 2 ($R2S s, $R2P progress lines): $R2OUT"
check "the second run finished (exit $RC)" '[ $RC -eq 0 ] && grep -qE "^re-encrypted [0-9]+ rows onto data key v2 .* left under retired keys" <<<"$R2OUT"'
check "non-terminal output: first line, plain progress lines (one per 2 s), no bar or escape" \
  '{ awk -v t="$R2S" "BEGIN{exit !(t < 2.5)}" || [ "$R2P" -ge 1 ]; } && head -n1 <<<"$R2ERR" | grep -qE "^[0-9]+ rows to re-encrypt onto data key v2$" && ! tail -n +2 <<<"$R2ERR" | grep -qvE "^[0-9]+/[0-9]+ rows, [0-9]+ rows/s, about [0-9]+ s left$" && ! grep -q $'"'"'[\r\x1b]'"'"' "$W/out/reencrypt-2.stderr" "$W/out/reencrypt-2.stdout"'
# Signing key rotation (section 6) now, so that the same housekeeping pass picks it up.
run sign-rotate-1 $BIN keys rotate --signing-key --activate-after-seconds 0; SRC1=$RC; SOUT1=$OUT
run sign-rotate-2 $BIN keys rotate --signing-key --activate-after-seconds 0; SRC2=$RC; SOUT2=$OUT
SIGN_AT=$(date +%s)
# The server seals under v1 until its next housekeeping pass (each minute): wait for it.
S=$(date +%s); PICKED=""
while [ $(( $(date +%s) - S )) -lt 75 ]; do
  read -r st tok pan < <(py one "$URL" "$GT" "$RANDOM$RANDOM")
  [ "$st" = 201 ] && echo "$tok $pan" >>"$W/globex-extra"
  [ "$st" = 201 ] && [ "$(q "select dek_version from tokens where token = '$tok'")" = 2 ] && { PICKED=1; break; }
  sleep 2
done
note "the server sealed under v2 after $(( $(date +%s) - S )) s"
check "the server picked up the rotation within a housekeeping pass" '[ -n "$PICKED" ]'
touch "$W/stop1"; wait $L1 $L2; BG=""
run reencrypt-3 $BIN keys reencrypt --batch-size 50
check "a third run finishes what the stale server sealed under v1: $(tail -n1 <<<"$OUT" | cut -c1-90)" '[ $RC -eq 0 ]'
check "no live row left under v1" '[ "$(sealed_v 1)" -eq 0 ]'
MOVES=$(q "select count(*) from attack_moves"); SUM=$(moved_sum)
check "sum of moved= in key.reencrypt records ($SUM) = rows moved ($MOVES)" '[ "$SUM" -eq "$MOVES" ]'
check "every move was v1 -> v2, each row once" '[ "$(q "select count(*) from attack_moves where from_v <> 1 or to_v <> 2")" -eq 0 ] && [ "$(q "select count(distinct token) from attack_moves")" -eq "$MOVES" ]'
for t in acme globex; do
  SUMM=$(py summary "$W/load1-$t.json"); RC=$?
  check "$t load during re-encryption: no 5xx, no wrong value: $SUMM" '[ $RC -eq 0 ]'
done
V=$(py verify "$URL" "$AP" "$GAP" 20 "$W/acme0" "$W/load1-acme.json"); RC=$?
check "acme: every token issued detokenizes to its PAN, deleted ones 404: $V" '[ $RC -eq 0 ]'
V=$(py verify "$URL" "$GP" "$GGP" 20 "$W/globex0" "$W/globex-extra" "$W/load1-globex.json"); RC=$?
check "globex: the same: $V" '[ $RC -eq 0 ]'
run destroy-v2 $BIN keys destroy --data-key 2
check "destroy the active key v2 refused: $(first_line)" 'clean_refusal'
run destroy-v1-early $BIN keys destroy --data-key 1
check "destroy v1 moments after it retired refused: $(first_line)" 'clean_refusal && grep -q "may still seal" <<<"$OUT"'
# Two housekeeping passes go by (the retirements moved back).
psql "$DATABASE_URL" -qtAc "update data_keys set retired_at = retired_at - interval '5 minutes'" >/dev/null
run destroy-v1 $BIN keys destroy --data-key 1
check "destroy v1: $(first_line)" '[ $RC -eq 0 ] && grep -q "v1 is destroyed" <<<"$OUT"'
run destroy-v1-again $BIN keys destroy --data-key 1
check "destroy v1 again refused: $(first_line)" 'clean_refusal'
for v in 99 0 2147483647 2147483648 4294967295; do
  run "destroy-$v" $BIN keys destroy --data-key "$v"
  check "destroy --data-key $v refused as not found (exit $RC): $(first_line)" 'clean_refusal && grep -q "no data key v$v" <<<"$OUT"'
  check "  and the refusal is recorded (key.destroy denied, data_key:$v)" '[ "$(q "select count(*) from audit_events where action = '"'"'key.destroy'"'"' and outcome = '"'"'denied'"'"' and subject = '"'"'data_key:$v'"'"'")" -eq 1 ]'
done
for v in -1 abc 4294967296 ''; do
  run "destroy-$v" $BIN keys destroy --data-key "$v"
  check "destroy --data-key '$v' refused cleanly (exit $RC): $(first_line)" 'clean_refusal'
done
check "data keys now: v2 only" '[ "$(q "select string_agg(version::text, '"'"','"'"' order by version) from data_keys")" = 2 ]'
check "key.destroy records: 1 success" '[ "$(q "select count(*) from audit_events where action = '"'"'key.destroy'"'"' and outcome = '"'"'success'"'"'")" -eq 1 ]'
V=$(py verify "$URL" "$AD" "$GA" 0 "$W/acme0" "$W/load1-acme.json"); RC=$?
check "acme still detokenizes after the destroy: $V" '[ $RC -eq 0 ]'
V=$(py verify "$URL" "$GD" "$GG" 0 "$W/globex0" "$W/globex-extra" "$W/load1-globex.json"); RC=$?
check "globex still detokenizes after the destroy: $V" '[ $RC -eq 0 ]'

# --- 2. Concurrency ----------------------------------------------------------------------
echo "== 2. four re-encryptions at once; six destroys of one key at once"
run rotate3 $BIN keys rotate
check "rotate to v3: $(first_line)" '[ $RC -eq 0 ]'
# The server seals under v2 until its next pass; rows under v2 are what the four move.
rm -f "$W/stop2"
py load "$URL" acme "$AT" "$AD" "$GA" "$W/stop2" "$W/load2-acme.json" 21 full "$W/acme0" "$W/load1-acme.json" & L1=$!
BG="$L1"; sleep 0.5
PIDS=""; for i in 1 2 3 4; do ($BIN keys reencrypt --batch-size 50 >"$W/out/reenc4-$i" 2>&1; echo $? >"$W/rc-reenc4-$i") & PIDS="$PIDS $!"; done
wait $PIDS
touch "$W/stop2"; wait $L1; BG=""
for i in 1 2 3 4; do
  RC=$(cat "$W/rc-reenc4-$i"); OUT=$(cat "$W/out/reenc4-$i")
  check "concurrent reencrypt $i (exit $RC): $(tail -n1 <<<"$OUT" | cut -c1-120)" '[ $RC -eq 0 ] || clean_refusal'
done
MOVES=$(q "select count(*) from attack_moves"); SUM=$(moved_sum)
check "after four at once: records' moved= ($SUM) = rows moved ($MOVES)" '[ "$SUM" -eq "$MOVES" ]'
check "no row moved twice from one version" '[ "$(q "select count(*) from (select token, from_v from attack_moves group by 1, 2 having count(*) > 1) d")" -eq 0 ]'
SUMM=$(py summary "$W/load2-acme.json"); RC=$?
check "acme load during the four: $SUMM" '[ $RC -eq 0 ]'
V=$(py verify "$URL" "$AD" "$GA" 0 "$W/acme0" "$W/load1-acme.json" "$W/load2-acme.json"); RC=$?
check "no row lost (acme): $V" '[ $RC -eq 0 ]'
V=$(py verify "$URL" "$GD" "$GG" 0 "$W/globex0" "$W/globex-extra" "$W/load1-globex.json"); RC=$?
check "no row lost (globex): $V" '[ $RC -eq 0 ]'
run rotate4 $BIN keys rotate; run rotate5 $BIN keys rotate
psql "$DATABASE_URL" -qtAc "update data_keys set retired_at = retired_at - interval '5 minutes'" >/dev/null
check "v4 is retired and seals no row" '[ "$(q "select count(*) from data_keys where version = 4 and retired_at is not null")" -eq 1 ] && [ "$(sealed_v 4)" -eq 0 ]'
PIDS=""; for i in 1 2 3 4 5 6; do ($BIN keys destroy --data-key 4 >"$W/out/destroy6-$i" 2>&1; echo $? >"$W/rc-destroy6-$i") & PIDS="$PIDS $!"; done
wait $PIDS
OKS=$(cat "$W"/rc-destroy6-* | grep -c '^0$')
check "six destroys of v4 at once: exactly one succeeded ($OKS)" '[ "$OKS" -eq 1 ]'
for i in 1 2 3 4 5 6; do
  RC=$(cat "$W/rc-destroy6-$i"); OUT=$(cat "$W/out/destroy6-$i")
  [ "$RC" -ne 0 ] && check "  loser $i said (exit $RC): $(first_line)" 'clean_refusal'
done
check "one key.destroy success record for v4" '[ "$(q "select count(*) from audit_events where action = '"'"'key.destroy'"'"' and subject = '"'"'data_key:4'"'"' and outcome = '"'"'success'"'"'")" -eq 1 ]'
check "v4 is in destroyed_data_keys once" '[ "$(q "select count(*) from destroyed_data_keys where version = 4")" -eq 1 ] && [ "$(q "select count(*) from data_keys where version = 4")" -eq 0 ]'

# --- 3. Tenant shred ---------------------------------------------------------------------
echo "== 3. tenant shred"
state() { q "select (select count(*) from principals p join tenants t on t.id = p.tenant_id where t.name = 'acme' and p.disabled_at is null),
  (select count(*) from tenants where shredded_at is not null), (select md5(string_agg(coalesce(encode(wrapped, 'hex'), '-'), ',' order by tenant_id)) from tenant_keys),
  (select count(*) from tokens where sealed_pan is not null), (select count(*) from audit_events where action = 'tenant.shred' and outcome = 'success')"; }
BEFORE=$(state)
i=0
while IFS='|' read -r tn cf; do
  i=$((i + 1)); run "shred-refused-$i" $BIN tenant shred --tenant "$tn" --confirm "$cf"
  check "shred --tenant '$tn' --confirm '$cf' refused (exit $RC): $(first_line)" 'clean_refusal && [ "$(state)" = "$BEFORE" ]'
done <<'EOF'
acme|ACME
ACME|ACME
acme |acme 
 acme| acme
acme|acmex
acme|acme%
acm_|acm_
acm%|acm%
nosuch|nosuch
|
EOF
run shred-no-confirm $BIN tenant shred --tenant acme
check "shred without --confirm refused: $(first_line)" 'clean_refusal && [ "$(state)" = "$BEFORE" ]'
V=$(py verify "$URL" "$AD" "$GA" 0 "$W/acme0" "$W/load1-acme.json" "$W/load2-acme.json"); RC=$?
check "acme principals enabled and tokens detokenize after the refusals: $V" '[ $RC -eq 0 ] && [ "$(q "select count(*) from principals p join tenants t on t.id = p.tenant_id where t.name = '"'"'acme'"'"' and p.disabled_at is null")" -eq 3 ]'
rm -f "$W/stop3"
py load "$URL" acme "$AT" "$AD" "$GA" "$W/stop3" "$W/load3-acme.json" 31 tok "$W/acme0" & L1=$!
BG="$L1"; sleep 0.5
PIDS=""; for i in 1 2 3 4 5 6; do ($BIN tenant shred --tenant acme --confirm acme >"$W/out/shred6-$i" 2>&1; echo $? >"$W/rc-shred6-$i") & PIDS="$PIDS $!"; done
wait $PIDS
SHRED_AT=$(date +%s)
sleep 1; touch "$W/stop3"; wait $L1; BG=""
OKS=$(cat "$W"/rc-shred6-* | grep -c '^0$')
check "six shreds at once: exactly one succeeded ($OKS): $(cat "$W"/out/shred6-* | grep shredded: | cut -c1-150)" '[ "$OKS" -eq 1 ]'
for i in 1 2 3 4 5 6; do
  RC=$(cat "$W/rc-shred6-$i"); OUT=$(cat "$W/out/shred6-$i")
  [ "$RC" -ne 0 ] && check "  loser $i said (exit $RC): $(first_line)" 'clean_refusal'
done
check "one tenant.shred success record by the command" '[ "$(q "select count(*) from audit_events where action = '"'"'tenant.shred'"'"' and outcome = '"'"'success'"'"' and coalesce(detail, '"''"') not like '"'"'%housekeeping%'"'"'")" -eq 1 ]'
SUMM=$(py summary "$W/load3-acme.json"); RC=$?
check "acme tokenize load across the shred: no 5xx: $SUMM" '[ $RC -eq 0 ]'
c() { curl -s -o /dev/null -w '%{http_code}' -X "$1" "$URL$2" -H "Authorization: Bearer $3" -H 'Content-Type: application/json' ${5:+-H "X-Access-Grant: $5"} ${4:+-d "$4"}; }
ATOK=$(py pick "$W/acme0" "$W/load1-acme.json" "$W/load2-acme.json")
check "acme tokenizer key now 401" '[ "$(c POST /v1/tokens "$AT" "{\"value\":\"4111111111111111\"}")" = 401 ]'
check "acme detokenizer key now 401" '[ "$(c POST /v1/detokenize "$AD" "{\"tokens\":[\"$ATOK\"]}" "$GA")" = 401 ]'
check "acme's tenant key row: wrapped is null, destroyed_at set" '[ "$(q "select count(*) from tenant_keys k join tenants t on t.id = k.tenant_id where t.name = '"'"'acme'"'"' and k.wrapped is null and k.destroyed_at is not null")" -eq 1 ]'
check "acme's grants all revoked" '[ "$(q "select count(*) from grants g join tenants t on t.id = g.tenant_id where t.name = '"'"'acme'"'"' and g.revoked_at is null")" -eq 0 ]'
acme_sealed() { q "select count(*) from tokens t join tenants n on n.id = t.tenant_id where n.name = 'acme' and (t.sealed_pan is not null or t.fingerprint is not null)"; }
LEFT=$(acme_sealed); note "acme rows with card data right after the shred: $LEFT"
while [ "$(acme_sealed)" -ne 0 ] && [ $(( $(date +%s) - SHRED_AT )) -lt 75 ]; do sleep 3; done
check "no acme row keeps sealed_pan or fingerprint ($(( $(date +%s) - SHRED_AT )) s after the shred; $LEFT right after)" '[ "$(acme_sealed)" -eq 0 ]'
note "acme tokens stamped later than the shred's time: $(q "select count(*) || ', last ' || coalesce(round(extract(epoch from max(t.created_at) - n.shredded_at)::numeric * 1000)::text, '-') || ' ms after' from tokens t join tenants n on n.id = t.tenant_id where n.name = 'acme' and t.created_at > n.shredded_at group by n.shredded_at")"
note "late_tokens sweep records: $(q "select coalesce(string_agg(detail, '; '), 'none') from audit_events where action = 'tenant.shred' and detail like '%late_tokens%'")"
V=$(py verify "$URL" "$GD" "$GG" 0 "$W/globex0" "$W/globex-extra" "$W/load1-globex.json"); RC=$?
check "globex tokens still detokenize: $V" '[ $RC -eq 0 ]'
read -r st tok pan < <(py one "$URL" "$GT" 777); echo "$tok $pan" >>"$W/globex-extra"
check "globex can still tokenize ($st)" '[ "$st" = 201 ]'
run principal-after-shred $BIN principal create --tenant acme --name again --role tokenizer --json
check "principal create in shredded acme refused: $(first_line)" 'clean_refusal && ! grep -q "\"key\"" <<<"$OUT"'
run status-after-shred $BIN keys status --json
check "keys status --json: acme tenant key destroyed" 'python3 -c "import json,sys; s=json.load(open(sys.argv[1])); assert [k[\"state\"] for k in s[\"tenant_keys\"] if k[\"name\"]==\"acme\"]==[\"destroyed\"], s[\"tenant_keys\"]" "$W/out/status-after-shred"'
run status-text-after-shred $BIN keys status
# A credential that outlived the shred (the attacker re-enables it in the database).
q "update principals set disabled_at = null where name = 'tok' and tenant_id = (select id from tenants where name = 'acme')" >/dev/null
LC=$(c GET "/v1/tokens/$ATOK" "$AT"); TC=$(c POST /v1/tokens "$AT" '{"value":"4012888888881881"}')
q "update principals set disabled_at = now() where tenant_id = (select id from tenants where name = 'acme')" >/dev/null
check "a credential that outlived the shred: lookup 410 ($LC), tokenize 403 ($TC)" '[ "$LC" = 410 ] && [ "$TC" = 403 ]'

# --- 6. Signing-key rotation (rotated twice in section 1) -------------------------------------
echo "== 6. signing key: two rotations with --activate-after-seconds 0"
check "first signing rotation: $(head -n1 <<<"$SOUT1" | cut -c1-120)" '[ $SRC1 -eq 0 ]'
RC=$SRC2; OUT=$SOUT2
check "second signing rotation at once succeeded or was refused cleanly (exit $SRC2): $(head -n1 <<<"$SOUT2" | cut -c1-120)" '[ $SRC2 -eq 0 ] || clean_refusal'
check "signing key.rotate records: $(q "select string_agg(outcome, ',') from audit_events where action = 'key.rotate' and subject like 'signing_key:%'")" '[ "$(q "select count(*) from audit_events where action = '"'"'key.rotate'"'"' and subject like '"'"'signing_key:%'"'"' and outcome = '"'"'success'"'"'")" -eq $(( (SRC1 == 0) + (SRC2 == 0) )) ]'
ACTIVE=$(q "select kid from signing_keys where retired_at is null")
# Instances load new signing keys at their housekeeping pass (each minute): wait for one.
while ! py jwks "$URL" | grep -qw -- "$ACTIVE" && [ $(( $(date +%s) - SIGN_AT )) -lt 75 ]; do sleep 2; done
KIDS=$(py jwks "$URL")
note "JWKS $(( $(date +%s) - SIGN_AT )) s after the rotations: $KIDS"
check "the server publishes the active kid after a housekeeping pass" 'grep -qw -- "$ACTIVE" <<<"$KIDS"'
check "JWKS still lists the old kid $KID_OLD while its grant is unexpired" 'grep -qw -- "$KID_OLD" <<<"$KIDS"'
V=$(py verify "$URL" "$GD" "$GG" 0 "$W/globex0" "$W/globex-extra" "$W/load1-globex.json"); RC=$?
check "the old grant still detokenizes: $V" '[ $RC -eq 0 ]'
GG2=$(py grant "$URL" "$GD"); KID_NEW=$(py kid "$GG2")
check "a new grant is signed by the active key ($KID_NEW)" '[ "$KID_NEW" = "$ACTIVE" ]'
V=$(py verify "$URL" "$GD" "$GG2" 0 "$W/globex-extra"); RC=$?
check "the new grant detokenizes: $V" '[ $RC -eq 0 ]'
check "after that housekeeping pass, still no acme row with card data" '[ "$(acme_sealed)" -eq 0 ]'

# --- 4. Rewrap -----------------------------------------------------------------------------
echo "== 4. rewrap under a new master key"
stop_server
wrapped() { q "select md5(concat((select string_agg(encode(wrapped, 'hex'), ',' order by version) from data_keys),
  (select string_agg(encode(wrapped, 'hex'), ',' order by name) from vault_secrets),
  (select string_agg(encode(wrapped, 'hex'), ',' order by kid) from signing_keys),
  (select string_agg(coalesce(encode(wrapped, 'hex'), '-'), ',' order by tenant_id) from tenant_keys)))"; }
dump_wrapped() { q "select encode(wrapped, 'base64') from data_keys union all select encode(wrapped, 'base64') from vault_secrets union all select encode(wrapped, 'base64') from signing_keys union all select encode(wrapped, 'base64') from tenant_keys where wrapped is not null" | tr -d '\n ' | fold -w 40 >>"$W/wrapped"; q "select encode(wrapped, 'hex') from data_keys union all select encode(wrapped, 'hex') from tenant_keys where wrapped is not null" | cut -c1-40 >>"$W/wrapped"; }
dump_wrapped
WB=$(wrapped)
WEAK=$(python3 -c 'import base64; print(base64.b64encode(bytes(32)).decode())')
DEV="strongroom-dev-key:$($BIN keygen)"
OTHER=$($BIN keygen)
echo "$WEAK $DEV $OTHER" >>"$W/secrets"
run rewrap-unset $BIN keys rewrap
check "rewrap without STRONGROOM_NEW_MASTER_KEY refused: $(first_line)" 'clean_refusal && [ "$(wrapped)" = "$WB" ]'
for kind in WEAK DEV KEY; do
  run "rewrap-$kind" env STRONGROOM_NEW_MASTER_KEY="${!kind}" $BIN keys rewrap
  check "rewrap to a $kind key refused, not echoed: $(first_line)" 'clean_refusal && [ "$(wrapped)" = "$WB" ] && ! grep -qF -- "${!kind#strongroom-dev-key:}" <<<"$OUT" && ! grep -qF -- "$KEY" <<<"$OUT"'
done
run rewrap-foreign env STRONGROOM_MASTER_KEY="$OTHER" STRONGROOM_NEW_MASTER_KEY="$($BIN keygen)" $BIN keys rewrap
check "rewrap with a current key that does not open the stored keys refused: $(first_line)" 'clean_refusal && grep -q "does not match" <<<"$OUT" && [ "$(wrapped)" = "$WB" ]'
check "no key.rewrap success recorded by the refusals" '[ "$(q "select count(*) from audit_events where action = '"'"'key.rewrap'"'"' and outcome = '"'"'success'"'"'")" -eq 0 ]'
K2=$($BIN keygen); echo "$K2" >>"$W/secrets"
S=$(date +%s.%N)
run rewrap-1 env STRONGROOM_NEW_MASTER_KEY="$K2" $BIN keys rewrap
note "rewrap took $(awk -v a="$S" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}') s"
check "rewrap to a fresh key: $(first_line | cut -c1-140)" '[ $RC -eq 0 ] && [ "$(wrapped)" != "$WB" ]'
dump_wrapped
run serve-old timeout 20 $BIN serve --listen 127.0.0.1:$((PORT + 1)) --policy-file "$W/policies.toml"
check "serve with the old key refused (exit $RC): $(grep -o 'does not match[^"]*' <<<"$OUT" | head -n1)" '[ $RC -ne 0 ] && [ $RC -ne 124 ] && grep -q "does not match" <<<"$OUT"'
run rotate-old $BIN keys rotate
check "keys rotate with the old key refused: $(first_line)" 'clean_refusal && grep -q "does not match" <<<"$OUT"'
run status-old $BIN keys status --json
check "keys status with the old key: opens_stored_keys false" 'grep -q "\"opens_stored_keys\": false" <<<"$OUT"'
export STRONGROOM_MASTER_KEY=$K2
start_server "$K2"
check "serve with the new key starts" '[ -n "$SERVER" ] && curl -fs "$URL/readyz" >/dev/null'
V=$(py verify "$URL" "$GD" "$GG" 0 "$W/globex0" "$W/globex-extra" "$W/load1-globex.json"); RC=$?
check "globex tokens detokenize under the new key: $V" '[ $RC -eq 0 ]'
run audit-verify-1 $BIN audit verify
check "audit verify with the new key: $(grep verified <<<"$OUT")" '[ $RC -eq 0 ] && grep -q verified <<<"$OUT"'
# A rewrap while a server still runs under the old key and new tenants tokenize their first card.
NT=""; for i in 1 2 3 4 5 6; do NT="$NT $(pkey "initech$i" p --role tokenizer --role detokenizer)"; done
LATE=$(pkey initech7 p --role tokenizer --role detokenizer)
K3=$($BIN keygen); echo "$K3" >>"$W/secrets"
py firsts "$URL" 40 "$W/firsts" $NT & FP=$!
sleep 0.05
run rewrap-race env STRONGROOM_NEW_MASTER_KEY="$K3" $BIN keys rewrap; RWRC=$RC; RWOUT=$OUT
wait $FP
note "rewrap racing new tenants (exit $RWRC): $(first_line | cut -c1-150)"
note "first tokenizes (i status token code): $(awk '{printf "%s:%s:%s  ", $1, $2, $4}' "$W/firsts")"
check "the rewrap succeeded or said keys were made meanwhile, nothing changed" '[ $RWRC -eq 0 ] || grep -q "keys were made or changed" <<<"$RWOUT"'
check "no first tokenize answered 5xx other than 503 not_ready" '! awk "\$2 >= 500 && !(\$2 == 503 && \$4 == \"not_ready\") || \$2 == 0" "$W/firsts" | grep -q .'
[ $RWRC -eq 0 ] && KC=$K3 || KC=$K2
read -r st tok pan < <(py one "$URL" "$LATE" 4242); LATECODE=$st
if [ $RWRC -eq 0 ]; then
  check "after the rewrap, the stale server answers a new tenant's first card 503 not_ready ($LATECODE)" '[ "$LATECODE" = 503 ]'
else
  check "rewrap refused: the server still makes a new tenant's key ($LATECODE)" '[ "$LATECODE" = 201 ]'
fi
stop_server
export STRONGROOM_MASTER_KEY=$KC
run status-final $BIN keys status --json
check "keys status --json with the current key: opens_stored_keys true" 'grep -q "\"opens_stored_keys\": true" <<<"$OUT"'
start_server "$KC"
BAD=""; i=0
for k in $NT $LATE; do
  i=$((i + 1)); G=$(py grant "$URL" "$k" 2>&1) || { BAD="$BAD initech$i:grant"; continue; }
  read -r st tok pan < <(py one "$URL" "$k" $((5000 + i)))
  [ "$st" = 201 ] || BAD="$BAD initech$i:tokenize=$st"
  [ "$st" = 201 ] && echo "$tok $pan" >"$W/nt-$i"
  line=$(awk -v n=$((i - 1)) '$1 == n && $3 != "-" {print $3, $5}' "$W/firsts"); [ -n "$line" ] && echo "$line" >>"$W/nt-$i"
  [ -s "$W/nt-$i" ] && { py verify "$URL" "$k" "$G" 0 "$W/nt-$i" >/dev/null || BAD="$BAD initech$i:detokenize"; }
done
check "every new tenant tokenizes and detokenizes under the current key (no tenant key left under an old master key):${BAD:- all ok}" '[ -z "$BAD" ]'
V=$(py verify "$URL" "$GD" "$GG" 0 "$W/globex0" "$W/globex-extra" "$W/load1-globex.json"); RC=$?
check "globex still detokenizes: $V" '[ $RC -eq 0 ]'
# The same race made deterministic: the attacker slows inserts into tenant_keys by 1.5 s in the
# database (a slow disk, a lock, a pause between the instance's check and its insert would do
# the same), so the running instance's check that its master key still opens the stored keys
# passes before the rewrap commits and its new tenant key commits after.
q "create function attack_slow() returns trigger language plpgsql as \$\$ begin perform pg_sleep(1.5); return new; end \$\$;
   create trigger attack_slow before insert on tenant_keys for each row execute function attack_slow();" >/dev/null
P8=$(pkey initech8 p --role tokenizer --role detokenizer)
K4=$($BIN keygen); echo "$K4" >>"$W/secrets"
py one "$URL" "$P8" 8888 >"$W/slow-first" & SP=$!
sleep 0.4
run rewrap-slow env STRONGROOM_NEW_MASTER_KEY="$K4" $BIN keys rewrap; RWS=$RC
wait $SP; read -r SST STOK SPAN <"$W/slow-first"; echo "$STOK $SPAN" >"$W/nt-slow"
q "drop trigger attack_slow on tenant_keys" >/dev/null
note "slowed race: rewrap exit $RWS ($(first_line | cut -c1-80)); the new tenant's first card answered $SST"
check "the slowed rewrap succeeded or said keys were made meanwhile (exit $RWS)" '[ $RWS -eq 0 ] || grep -q "keys were made or changed" <<<"$OUT"'
stop_server
[ $RWS -eq 0 ] && KC=$K4; export STRONGROOM_MASTER_KEY=$KC
run status-slow $BIN keys status --json
OPENS=$(grep -o '"opens_stored_keys": [a-z]*' <<<"$OUT")
start_server "$KC"
read -r st tok pan < <(py one "$URL" "$P8" 8889)
G8=$(py grant "$URL" "$P8" 2>/dev/null); V=$([ "$SST" = 201 ] && py verify "$URL" "$P8" "$G8" 0 "$W/nt-slow")
check "a tenant key made during a rewrap opens under the new master key: its first card ($SST) then reads back (${V:-n/a}), a new card tokenizes ($st)" '[ "$st" = 201 ] && { [ "$SST" != 201 ] || grep -q "bad=0" <<<"$V"; }'
RZ=$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz"); read -r gst gtok gpan < <(py one "$URL" "$GT" 8890)
check "the other tenants are unaffected (readyz $RZ, globex tokenize $gst)" '[ "$RZ" = 200 ] && [ "$gst" = 201 ]'
check "keys status agrees ($OPENS) with what the tenant keys open" '{ [ "$st" = 201 ] && grep -q true <<<"$OPENS"; } || { [ "$st" != 201 ] && grep -q false <<<"$OPENS"; }'
stop_server
run audit-verify-2 $BIN audit verify
check "audit verify with the current key: $(grep verified <<<"$OUT")" '[ $RC -eq 0 ] && grep -q verified <<<"$OUT"'
dump_wrapped

# --- 5. Leaks ------------------------------------------------------------------------------
echo "== 5. leaks"
cat "$W/acme0" "$W/globex0" "$W"/globex-extra "$W"/nt-* 2>/dev/null | awk '{print $2}' >"$W/pans"
python3 -c 'import json,sys; [print(p) for f in sys.argv[1:] for _, p in json.load(open(f))["created"]]' "$W"/load*.json >>"$W/pans"
awk '{print $5}' "$W/firsts" >>"$W/pans"
tr ' ' '\n' <"$W/secrets" | sed 's/^strongroom-dev-key://' | grep . >"$W/secret-lines"
LOGS="$W/server-*.log $W/out/*"
check "no master key (old, new, refused) in any log or output ($(cat $LOGS | wc -l) lines)" '! cat $LOGS | grep -qF -f "$W/secret-lines"'
check "no wrapped key (base64 or hex prefix) in any log or output" '! cat $LOGS | grep -qF -f "$W/wrapped"'
check "none of the $(wc -l <"$W/pans") PANs in any log or output" '! cat $LOGS | grep -qF -f "$W/pans"'
check "no panic or backtrace anywhere" '! cat $LOGS | grep -qiE "panicked|stack backtrace"'
check "no 5xx logged by the servers other than 503" '! cat "$W"/server-*.log | grep -E "\"status\":5[0-9][0-9]" | grep -vq "\"status\":503"'
echo "took $(( $(date +%s) - T0 )) s"
exit $fail
