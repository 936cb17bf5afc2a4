#!/usr/bin/env bash
# Re-encryption rate on this machine: fill a vault through the batch endpoint, rotate the data
# key, and time `strongroom keys reencrypt` once with the vault idle and once while wrk keeps
# tokenizing new cards at 8 clients; the tokenize rate during it is set against the same load
# without re-encryption, measured in the same run. Prints a table; only loopback is used.
#
#   bench/reencrypt.sh                   # 200,000 rows, batch 500
#   ROWS=1000000 BATCH=1000 bench/reencrypt.sh
#   BIN=/path/to/strongroom bench/reencrypt.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-200000}
BATCH=${BATCH:-500}
PORT=${PORT:-18460}
LOAD_SECONDS=${LOAD_SECONDS:-15}

. .ci/postgres.sh
if [ -z "${BIN:-}" ]; then
  cargo build --release -q
  BIN=target/release/strongroom
fi
ADMIN=$STRONGROOM_TEST_DATABASE_URL
DB=strongroom_reencrypt_$$
WORK=$(mktemp -d)
SERVER=""
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  psql "$ADMIN" -qtAc "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

psql "$ADMIN" -qtAc "create database $DB" >/dev/null
export DATABASE_URL="${ADMIN%/*}/$DB"
STRONGROOM_MASTER_KEY=$($BIN keygen)
export STRONGROOM_MASTER_KEY
$BIN migrate >/dev/null
TOKENIZER_KEY=$($BIN principal create --tenant bench --name merchant --role tokenizer --json |
  sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
export TOKENIZER_KEY
STRONGROOM_LOG=warn $BIN serve --listen "127.0.0.1:$PORT" --rate-limit-per-second 0 \
  --db-pool-size 16 >"$WORK/server.log" 2>&1 &
SERVER=$!
URL="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -fs "$URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

count() { psql "$DATABASE_URL" -qtAc "select count(*) from tokens where destroyed_at is null"; }
while [ "$(count)" -lt "$ROWS" ]; do
  wrk -t2 -c16 -d10s -s bench/lua/tokenize_batch.lua "$URL" >/dev/null
done
psql "$DATABASE_URL" -qtAc "vacuum analyze tokens" >/dev/null
FILLED=$(count)

tokenize_rate() { # seconds → requests/s of single tokenize calls at 8 clients
  wrk -t2 -c8 -d"$1s" -s bench/lua/tokenize_new.lua "$URL" | sed -n 's/^Requests\/sec: *\([0-9]*\).*/\1/p'
}
reencrypt() { # → rows/s from the command's own summary
  $BIN keys rotate >/dev/null
  $BIN keys reencrypt --batch-size "$BATCH" 2>/dev/null |
    sed -n 's/.* in \([0-9.]*\) s (\([0-9]*\) rows\/s).*/\2 \1/p'
}

read -r IDLE_RATE IDLE_SECONDS <<<"$(reencrypt)"
BASE_TOKENIZE=$(tokenize_rate "$LOAD_SECONDS")
# The same load again, with a re-encryption of everything running beside it.
tokenize_rate "$LOAD_SECONDS" >"$WORK/load" &
LOAD=$!
sleep 1
read -r LOADED_RATE LOADED_SECONDS <<<"$(reencrypt)"
wait "$LOAD"
LOADED_TOKENIZE=$(cat "$WORK/load")
LEFT=$(psql "$DATABASE_URL" -qtAc "select count(*) from tokens where dek_version is not null and dek_version <> (select max(version) from data_keys)")
VERIFY=$($BIN audit verify 2>/dev/null | tail -1 || echo "audit verify FAILED")

cat <<TABLE
Run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, PostgreSQL $(psql "$ADMIN" -qtAc 'show server_version'), $FILLED rows, batch $BATCH.

| re-encryption of every row | rows/s | seconds | tokenize (8 clients) meanwhile |
|---|---|---|---|
| vault idle | $IDLE_RATE | $IDLE_SECONDS | — |
| under tokenize load | $LOADED_RATE | $LOADED_SECONDS | $LOADED_TOKENIZE req/s (alone: $BASE_TOKENIZE req/s) |

Rows left under retired keys afterwards (the load's own new rows sealed before an instance's
pickup of the rotation included): $LEFT. $VERIFY
TABLE
