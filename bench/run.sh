#!/usr/bin/env bash
# The benchmark, in one run on one machine: PostgreSQL's own rate for the equivalent statements
# (pgbench), then Strongroom (release build) driven by wrk at the same concurrencies, and a
# table of requests/s, p50, p99, the server's peak RSS and the ratio to pgbench.
#
#   bench/run.sh                       # every scenario at 1, 8 and 32 clients, 10 s each
#   DURATION=5 CLIENTS="8 32" SCENARIOS="tokenize_new detokenize" bench/run.sh
#   FILL=10000000 bench/run.sh         # then fill to 10M tokens and measure again at that size
#   BIN=/path/to/strongroom bench/run.sh   # measure another build (e.g. a baseline commit's)
#   KEY=pkcs11 bench/run.sh            # the master key in a SoftHSM2 token instead of the environment
#
# Writes the table to $OUT (default bench/results.md) and prints it. Only loopback is used.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-"1 8 32"}
SCENARIOS=${SCENARIOS:-"tokenize_new tokenize_known tokenize_batch lookup detokenize pair"}
PORT=${PORT:-18443}
POOL=${POOL:-16}
OUT=${OUT:-bench/results.md}
FILL=${FILL:-0}
SCALE_SCENARIOS=${SCALE_SCENARIOS:-"tokenize_new tokenize_known lookup detokenize"}

. .ci/postgres.sh
for tool in wrk pgbench curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "bench: installing $tool"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk postgresql-client curl >/dev/null
  fi
done

if [ -z "${BIN:-}" ]; then
  cargo build --release -q
  BIN=target/release/strongroom
fi
ADMIN=$STRONGROOM_TEST_DATABASE_URL
BASE=${ADMIN%/*}
DB=strongroom_bench_$$
WORK=$(mktemp -d)
SERVER=""
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  psql "$ADMIN" -qtAc "drop database if exists $DB with (force)" >/dev/null 2>&1 || true
  psql "$ADMIN" -qtAc "drop database if exists ${DB}_pg with (force)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

threads() { if [ "$1" -lt 2 ]; then echo "$1"; else echo 2; fi; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() { local t=0 p; for p in $(pgrep -x postgres); do t=$((t + $(ticks "$p"))); done; echo "$t"; }
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
HZ=$(getconf CLK_TCK)


# --- PostgreSQL itself -------------------------------------------------------------------
psql "$ADMIN" -qtAc "create database ${DB}_pg" >/dev/null
psql "$BASE/${DB}_pg" -q -f bench/pgbench/schema.sql >/dev/null
declare -A PG PGCPU
for script in insert detokenize; do
  for c in $CLIENTS; do
    p0=$(busy_ticks)
    out=$(pgbench -n -c "$c" -j "$(threads "$c")" -T "$DURATION" -f "bench/pgbench/$script.sql" \
          "$BASE/${DB}_pg" 2>/dev/null)
    p1=$(busy_ticks)
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    n=$(echo "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
    PG[$script.$c]=${tps%.*}
    PGCPU[$script.$c]=$(awk -v p=$((p1 - p0)) -v n="${n:-0}" -v hz="$HZ" \
                        'BEGIN { if (n > 0) printf "%.3f", p * 1000 / hz / n; else print "—" }')
    echo "pgbench $script c=$c: ${PG[$script.$c]} tps, machine CPU ${PGCPU[$script.$c]} ms/tx"
  done
done

# --- Strongroom --------------------------------------------------------------------------
psql "$ADMIN" -qtAc "create database $DB" >/dev/null
export DATABASE_URL="$BASE/$DB"
if [ "${KEY:-env}" = pkcs11 ]; then
  # A SoftHSM2 token of the run's own; every wrap and unwrap of the vault's keys goes to it.
  command -v softhsm2-util >/dev/null 2>&1 || . .ci/softhsm.sh
  export SOFTHSM2_CONF="$WORK/softhsm2.conf" STRONGROOM_PKCS11_PIN=246810
  mkdir -p "$WORK/tokens"
  printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$WORK/tokens" >"$SOFTHSM2_CONF"
  softhsm2-util --init-token --free --label bench --pin "$STRONGROOM_PKCS11_PIN" --so-pin 13579 >/dev/null
  STRONGROOM_MASTER_KEY_PKCS11="module=/usr/lib/softhsm/libsofthsm2.so;token=bench;label=master"
  export STRONGROOM_MASTER_KEY_PKCS11
  $BIN keygen --pkcs11 "$STRONGROOM_MASTER_KEY_PKCS11" >/dev/null
else
  STRONGROOM_MASTER_KEY=$($BIN keygen)
  export STRONGROOM_MASTER_KEY
fi
$BIN migrate >/dev/null
key_of() { sed -n 's/.*"key":"\([^"]*\)".*/\1/p'; }
TOKENIZER_KEY=$($BIN principal create --tenant bench --name merchant --role tokenizer --json | key_of)
DETOKENIZER_KEY=$($BIN principal create --tenant bench --name payments --role detokenizer --json | key_of)
export TOKENIZER_KEY DETOKENIZER_KEY
cat > "$WORK/policies.toml" <<'TOML'
[[policy]]
name = "checkout"
roles = ["detokenizer"]
purposes = ["payment_authorization"]
approvals = 0
max_duration_seconds = 3600
max_uses = 1000000
any_token = true
TOML
STRONGROOM_LOG=warn $BIN serve --listen "127.0.0.1:$PORT" --policy-file "$WORK/policies.toml" \
  --rate-limit-per-second 0 --db-pool-size "$POOL" \
  --audit-checkpoint-file "$WORK/audit-checkpoints.jsonl" >"$WORK/server.log" 2>&1 &
SERVER=$!
URL="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -fs "$URL/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

call() { # method path key [body] [grant]
  curl -fs -X "$1" "$URL$2" -H "Authorization: Bearer $3" -H 'Content-Type: application/json' \
    ${5:+-H "X-Access-Grant: $5"} ${4:+-d "$4"}
}
TOKEN=$(call POST /v1/tokens "$TOKENIZER_KEY" '{"value":"4111111111111111"}' | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
GRANT=$(call POST /v1/access-requests "$DETOKENIZER_KEY" \
  '{"any_token":true,"purpose":"payment_authorization","reason":"bench","duration_seconds":3600,"max_uses":1000000}' \
  | sed -n 's/.*"grant":"\([^"]*\)".*/\1/p')
export TOKEN GRANT
# The known PANs are tokenized once before they are measured.
wrk -t1 -c4 -d2s -s bench/lua/tokenize_known.lua "$URL" >/dev/null

declare -A ROWS
measure() { # scenario clients label
  local s=$1 c=$2 label=$3
  t=$(threads "$c"); [ "$s" = pair ] && t=$c
  local s0 p0 m0 s1 p1 m1
  s0=$(ticks "$SERVER"); p0=$(pg_ticks); m0=$(busy_ticks)
  out=$(wrk -t"$t" -c"$c" -d"${DURATION}s" --latency -s "bench/lua/$s.lua" "$URL")
  s1=$(ticks "$SERVER"); p1=$(pg_ticks); m1=$(busy_ticks)
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  # CPU per request, in ms: the vault's process, PostgreSQL's processes (the pool's backends
  # live through the run), and the whole machine (load generator included, as for pgbench).
  cpu=$(awk -v s=$((s1 - s0)) -v p=$((p1 - p0)) -v m=$((m1 - m0)) -v n="${requests:-0}" -v hz="$HZ" \
        'BEGIN { if (n > 0) printf "%.3f | %.3f | %.3f", s * 1000 / hz / n, p * 1000 / hz / n, m * 1000 / hz / n; else print "— | — | —" }')
  rps=$(echo "$out" | sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p')
  p50=$(echo "$out" | awk '$1=="50%"{print $2}')
  p99=$(echo "$out" | awk '$1=="99%"{print $2}')
  errors=$(echo "$out" | sed -n 's/^LUA_ERRORS \([0-9]*\).*/\1/p')
  non2xx=$(echo "$out" | sed -n 's/.*Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p')
  rps=${rps%.*}
  case $s in
    tokenize_batch) rate=$((rps * 100)); unit="$rps req/s = $rate tokens/s"; base=${PG[insert.$c]} ;;
    pair) rate=$((rps / 2)); unit="$rate pairs/s"; base=${PG[detokenize.$c]} ;;
    tokenize_*) rate=$rps; unit="$rps req/s"; base=${PG[insert.$c]} ;;
    *) rate=$rps; unit="$rps req/s"; base=${PG[detokenize.$c]} ;;
  esac
  ratio=$(awk -v r="$rate" -v b="$base" 'BEGIN { if (b > 0) printf "%.2f×", r / b; else print "—" }')
  flag=""; [ "${errors:-0}" != 0 ] || [ -n "$non2xx" ] && flag=" (INVALID: ${errors:-0} errors)"
  ROWS[$label$s.$c]="| $label$s | $c | $unit | $p50 | $p99 | $ratio$flag | $cpu |"
  echo "${ROWS[$label$s.$c]}"
}
for s in $SCENARIOS; do for c in $CLIENTS; do measure "$s" "$c" ""; done; done

# --- At scale: fill through the batch endpoint, then measure again -----------------------
SIZES=""
if [ "$FILL" -gt 0 ]; then
  count() { psql "$DATABASE_URL" -qtAc "select count(*) from tokens"; }
  started=$(date +%s)
  while [ "$(count)" -lt "$FILL" ]; do
    wrk -t2 -c32 -d30s -s bench/lua/tokenize_batch.lua "$URL" >/dev/null
  done
  filled=$(count); took=$(( $(date +%s) - started ))
  # Settle the database before measuring: vacuum what the fill left and write back its pages.
  psql "$DATABASE_URL" -qtAc "vacuum analyze tokens" >/dev/null
  psql "$DATABASE_URL" -qtAc "vacuum analyze audit_events" >/dev/null
  psql "$DATABASE_URL" -qtAc "checkpoint" >/dev/null
  per_million() { psql "$DATABASE_URL" -qtAc "select pg_size_pretty(($1) * 1000000 / greatest($filled, 1))"; }
  SIZES="Filled to $filled tokens in ${took}s through the batch endpoint. Per million tokens: table $(per_million "pg_relation_size('tokens')"), indexes $(per_million "pg_indexes_size('tokens')"), audit trail $(per_million "pg_total_relation_size('audit_events')")."
  echo "$SIZES"
  if [ "$filled" -ge 1000000 ]; then label="@$((filled / 1000000))M "; else label="@$((filled / 1000))k "; fi
  for s in $SCALE_SCENARIOS; do for c in $CLIENTS; do measure "$s" "$c" "$label"; done; done
fi
RSS=$(awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$SERVER/status")

# --- Still right: a sample of the tokens the run created detokenizes to PANs that match their
# masks and pass Luhn, and fresh PANs come back exactly.
SAMPLE=$(psql "$DATABASE_URL" -qtAc "select string_agg('\"' || token || '\"', ',') from (select token from tokens where destroyed_at is null order by random() limit 50) s")
ANSWER=$(call POST /v1/detokenize "$DETOKENIZER_KEY" "{\"tokens\":[$SAMPLE]}" "$GRANT")
CHECKED=$(echo "$ANSWER" | grep -o '"token":"[^"]*","value":"[0-9]*"' | while IFS= read -r pair; do
  token=$(echo "$pair" | sed 's/"token":"\([^"]*\)".*/\1/'); value=$(echo "$pair" | sed 's/.*"value":"\([0-9]*\)"/\1/')
  masked=$(psql "$DATABASE_URL" -qtAc "select masked_pan from tokens where token = '$token'")
  luhn=$(echo "$value" | awk '{ s = 0; n = length($0); for (i = n; i >= 1; i--) { d = substr($0, i, 1) + 0; if ((n - i) % 2 == 1) { d *= 2; if (d > 9) d -= 9 } s += d } print (s % 10 == 0) ? "ok" : "bad" }')
  [ "${value:0:6}" = "${masked:0:6}" ] && [ "${value: -4}" = "${masked: -4}" ] && [ "$luhn" = ok ] && echo ok || echo "MISMATCH $token"
done | sort | uniq -c | tr '\n' ' ')
FRESH=$(call POST /v1/tokens "$TOKENIZER_KEY" '{"value":"5555555555554444"}' | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
BACK=$(call POST /v1/detokenize "$DETOKENIZER_KEY" "{\"tokens\":[\"$FRESH\"]}" "$GRANT" | sed -n 's/.*"value":"\([0-9]*\)".*/\1/p')
[ "$BACK" = 5555555555554444 ] && EXACT=ok || EXACT="MISMATCH"
VERIFY=$($BIN audit verify --audit-checkpoint-file "$WORK/audit-checkpoints.jsonl" 2>/dev/null || echo "audit verify FAILED")

{
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, ${DURATION}s per cell, PostgreSQL $(psql "$ADMIN" -qtAc 'show server_version'), synchronous_commit=$(psql "$ADMIN" -qtAc 'show synchronous_commit'), pool $POOL."
  echo
  echo "| pgbench | clients | tps | machine CPU ms/tx |"
  echo "|---|---|---|---|"
  for script in insert detokenize; do for c in $CLIENTS; do echo "| $script | $c | ${PG[$script.$c]} | ${PGCPU[$script.$c]} |"; done; done
  echo
  echo "| scenario | clients | Strongroom | p50 | p99 | ratio to pgbench | CPU ms/req: vault | PostgreSQL | machine |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for s in $SCENARIOS; do for c in $CLIENTS; do echo "${ROWS[$s.$c]}"; done; done
  if [ -n "$SIZES" ]; then
    for s in $SCALE_SCENARIOS; do for c in $CLIENTS; do echo "${ROWS[$label$s.$c]}"; done; done
    echo
    echo "$SIZES"
  fi
  echo
  echo "Server peak RSS: $RSS. Sample of created tokens detokenized: $CHECKED; fresh PAN round trip: $EXACT; $VERIFY."
} | tee "$OUT"
