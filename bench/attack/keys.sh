#!/usr/bin/env bash
# An outsider's check of `strongroom keys status` and `keys rotate` against a release build:
# no key material printed; weak, development, foreign and missing master keys refused with
# nothing changed; eight operators rotating at once leave one active key, versions without a
# gap and one record per rotation; old rows still counted under their retired key; the trail
# verifies. Uses its own database on the local PostgreSQL and a server on loopback.
#
#   bench/attack/keys.sh              # BIN=/path/to/strongroom for another build
set -u
cd "$(dirname "$0")/../.."
BIN=${BIN:-target/release/strongroom}
. .ci/postgres.sh >/dev/null
ADMIN=$STRONGROOM_TEST_DATABASE_URL
DB=strongroom_keysattack_$$
psql "$ADMIN" -qtAc "create database $DB" >/dev/null
export DATABASE_URL=${ADMIN%/*}/$DB
KEY=$($BIN keygen); export STRONGROOM_MASTER_KEY=$KEY
$BIN migrate >/dev/null
TOK=$($BIN principal create --tenant t --name m --role tokenizer --json | sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
STRONGROOM_LOG=warn $BIN serve --listen 127.0.0.1:18777 >/tmp/keys-attack-server-$$.log 2>&1 & SERVER=$!
for _ in $(seq 50); do curl -fs http://127.0.0.1:18777/readyz >/dev/null && break; sleep 0.1; done
for pan in 4111111111111111 5555555555554444 4012888888881881; do curl -fs -X POST http://127.0.0.1:18777/v1/tokens -H "Authorization: Bearer $TOK" -H 'Content-Type: application/json' -d "{\"value\":\"$pan\"}" >/dev/null || echo "tokenize failed"; done
fail=0; check() { if eval "$2"; then echo "  ok    $1"; else echo "  FAIL  $1"; fail=1; fi; }
OUT=$($BIN keys status --json 2>&1)
check "status prints no master key" "! grep -qF '$KEY' <<<\"\$OUT\""
check "status is JSON with one active key" "python3 -c 'import json,sys; s=json.loads(sys.argv[1]); assert [k[\"state\"] for k in s[\"data_keys\"]]==[\"active\"]' \"\$OUT\""
WEAK=$(python3 -c 'import base64; print(base64.b64encode(bytes(32)).decode())')
OUT=$(STRONGROOM_MASTER_KEY=$WEAK $BIN keys rotate 2>&1); RC=$?
check "a weak key is refused without echo" "[ $RC -ne 0 ] && ! grep -qF '$WEAK' <<<\"\$OUT\""
DEV="strongroom-dev-key:$($BIN keygen)"
OUT=$(STRONGROOM_MASTER_KEY=$DEV $BIN keys rotate 2>&1); RC=$?
check "a dev key is refused for rotate" "[ $RC -ne 0 ]"
OTHER=$($BIN keygen)
OUT=$(STRONGROOM_MASTER_KEY=$OTHER $BIN keys rotate 2>&1); RC=$?
check "another production key is refused: $OUT" "[ $RC -ne 0 ] && grep -q 'does not match' <<<\"\$OUT\""
check "nothing changed after refusals" "[ \$(psql $DATABASE_URL -qtAc 'select count(*) from data_keys') -eq 1 ]"
OUT=$(unset STRONGROOM_MASTER_KEY; $BIN keys rotate 2>&1); RC=$?
check "no key at all is refused" "[ $RC -ne 0 ]"
# Eight operators at once.
PIDS=""; for i in $(seq 8); do ($BIN keys rotate >/tmp/keys-attack-rot-$i.log 2>&1; echo $? > /tmp/keys-attack-rc-$i) & PIDS="$PIDS $!"; done; wait $PIDS
OKS=$(cat /tmp/keys-attack-rc-* | grep -c '^0$')
check "eight concurrent rotations: $OKS succeeded, one active key" "[ \$(psql $DATABASE_URL -qtAc 'select count(*) from data_keys where retired_at is null') -eq 1 ]"
check "versions are 1..$((OKS+1)) with no gap" "[ \$(psql $DATABASE_URL -qtAc 'select max(version) from data_keys') -eq $((OKS+1)) ]"
check "one key.rotate success record per success" "[ \$(psql $DATABASE_URL -qtAc \"select count(*) from audit_events where action='key.rotate' and outcome='success'\") -eq $OKS ]"
check "losers said why" "! grep -L 'active\|another rotation' /tmp/keys-attack-rot-*.log | grep -q ."
# Old rows still read (status rows under v1 == 3) and server still serves.
OUT=$($BIN keys status --json)
check "rows under v1 still 3" "python3 -c 'import json,sys; s=json.loads(sys.argv[1]); assert s[\"data_keys\"][0][\"rows\"]==3, s' \"\$OUT\""
check "server still ready" "curl -fs http://127.0.0.1:18777/readyz >/dev/null"
kill $SERVER; wait $SERVER 2>/dev/null
VER=$($BIN audit verify 2>&1); check "audit verify: $VER" "grep -q verified <<<\"\$VER\""
psql "$ADMIN" -qtAc "drop database $DB with (force)" >/dev/null
rm -f /tmp/keys-attack-r*-*.log /tmp/keys-attack-rc-*
exit $fail
