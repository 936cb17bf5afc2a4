#!/usr/bin/env bash
# Memory after a connection spike: the server's resident memory when warm, at the peak of a
# spike of many connections at once, and after the spike has passed.
#
#   bench/spike.sh                                  # 1,500 connections for 10 s, then 20 s idle
#   CONNECTIONS=3000 DURATION=20 SETTLE=60 bench/spike.sh
#   BIN=/path/to/strongroom bench/spike.sh          # another build (e.g. a baseline commit's)
#
# The spike is wrk with SCENARIO's script (default tokenize_known) at CONNECTIONS connections
# on 2 threads; past `--max-in-flight` (default 512) the vault answers `503 overloaded`, so the
# spike measures the shedding path too. Prints one table row. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${CONNECTIONS:-1500}
DURATION=${DURATION:-10}
SETTLE=${SETTLE:-20}
SCENARIO=${SCENARIO:-tokenize_known}
PORT=${PORT:-18453}

. .ci/postgres.sh
command -v wrk >/dev/null 2>&1 || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk curl >/dev/null
}
if [ -z "${BIN:-}" ]; then
  cargo build --release -q
  BIN=target/release/strongroom
fi
ADMIN=$STRONGROOM_TEST_DATABASE_URL
DB=strongroom_spike_$$
WORK=$(mktemp -d)
SERVER=""
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  psql "$ADMIN" -qtAc "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
# wrk and the server each hold one descriptor per connection.
ulimit -n 65536 2>/dev/null || true

psql "$ADMIN" -qtAc "create database $DB" >/dev/null
export DATABASE_URL="${ADMIN%/*}/$DB"
STRONGROOM_MASTER_KEY=$($BIN keygen)
export STRONGROOM_MASTER_KEY
$BIN migrate >/dev/null
TOKENIZER_KEY=$($BIN principal create --tenant spike --name merchant --role tokenizer --json |
  sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
export TOKENIZER_KEY
STRONGROOM_LOG=warn $BIN serve --listen "127.0.0.1:$PORT" --rate-limit-per-second 0 \
  >"$WORK/server.log" 2>&1 &
SERVER=$!
URL="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -fs "$URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

rss() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$SERVER/status"; }
hwm() { awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$SERVER/status"; }

# Warm: the known PANs tokenized, pools filled, a few seconds of ordinary traffic.
wrk -t1 -c8 -d3s -s "bench/lua/$SCENARIO.lua" "$URL" >/dev/null
sleep 2
warm=$(rss)
out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 20s -s "bench/lua/$SCENARIO.lua" "$URL" 2>&1)
peak=$(hwm)
rps=$(echo "$out" | sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p')
non2xx=$(echo "$out" | sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p')
sleep "$SETTLE"
after=$(rss)
ratio=$(awk -v a="$after" -v w="$warm" 'BEGIN { printf "%.2f×", a / w }')
echo "| $SCENARIO | $CONNECTIONS connections, ${DURATION}s | ${rps%.*} req/s, ${non2xx:-0} shed | $warm MiB | $peak MiB | $after MiB after ${SETTLE}s | $ratio |"
