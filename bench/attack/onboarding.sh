#!/usr/bin/env bash
# An outsider's attack on what issue 17 added for a newcomer, against a release build: the
# master key in a file (`keygen --out`, `--keep-existing`, STRONGROOM_MASTER_KEY_FILE: modes,
# symlinks, directories, devices, empty and padded files, both sources at once), `principal
# list` and `show` (no key, hash or secret; hostile names; an SQL-injection tenant; another
# tenant's principal), the messages for an unusable database (another engine's URL, an
# unreachable, missing or black-holed database, a refused password — never the password, and
# fast), policy-file trouble and `--listen`, `strongroom totp code` (an attacker-edited dev
# directory; the dev banner's pasted script), re-tokenizing with other metadata
# (`metadata_ignored`, no cross-tenant oracle, the card-data detector first), and `strongroom
# health` (sealed, stopped, TLS without or with the wrong CA, a server that never answers).
#
# PostgreSQL at 127.0.0.1:5432 accepts every local connection without a password (trust), so
# a refused password is played by a small fake PostgreSQL server that asks for one.
#
#   bench/attack/onboarding.sh        # BIN=/path/to/strongroom for another build; KEEP=1 keeps $W
set -u
. "$(dirname "$0")/lib.sh"   # check, note, finish, py, JSON, key, hdr, gone_within
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${BIN:-target/release/strongroom}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
PORT=${PORT:-18860}
P_MAIN=$PORT; P_TLS=$((PORT + 1)); P_SEALED=$((PORT + 2)); P_DEV=$((PORT + 3)); P_DEV2=$((PORT + 4))
P_FAKEPG=$((PORT + 5)); P_HOLE=$((PORT + 6)); P_FAKEHTTP=$((PORT + 7)); P_LISTEN=$((PORT + 8))
P_DEAD=$((PORT + 9)); P_SLOW=$((PORT + 10)); P_NODB=$((PORT + 11))
URL=http://127.0.0.1:$P_MAIN
. .ci/postgres.sh >/dev/null
ADMINDB=$STRONGROOM_TEST_DATABASE_URL
DB=strongroom_onboardattack_$$
DBMISSING=strongroom_onboardmissing_$$
ROLE=strongroom_onboardrole_$$
PW="Zq7pw${$}Xk"                   # the database password that must never be printed
W=$(mktemp -d /tmp/onboarding-attack.XXXXXX)
chmod 700 "$W"
mkdir -p "$W/out" "$W/rc" "$W/log" "$W/setup" "$W/keys" "$W/tls"
: >"$W/passwords"
PIDS=""
cleanup() {
  for p in $PIDS; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  for d in $DB $DBMISSING; do psql "$ADMINDB" -qtAc "drop database if exists $d with (force)" >/dev/null 2>&1; done
  psql "$ADMINDB" -qtAc "drop role if exists $ROLE" >/dev/null 2>&1
  [ "${KEEP:-0}" = 1 ] && echo "kept $W" || rm -rf "$W"
}
trap cleanup EXIT
for v in STRONGROOM_MASTER_KEY STRONGROOM_MASTER_KEY_FILE STRONGROOM_MASTER_KEY_PKCS11 STRONGROOM_SEALED \
  STRONGROOM_UNSEAL_THRESHOLD STRONGROOM_AUDIT_CHECKPOINT_FILE STRONGROOM_LISTEN STRONGROOM_POLICY_FILE \
  STRONGROOM_HEALTH_URL STRONGROOM_HEALTH_CACERT STRONGROOM_LOG DATABASE_URL; do
  unset "$v"
done
T0=$(date +%s)

# run NAME CMD...: stdout and stderr together in $OUT and $W/out/NAME (grepped for leaks), exit
# in $RC, seconds taken in $SECS; stdout alone in $W/out/NAME.stdout.
run() {
  local name=$1 s e; shift
  s=$(date +%s%N)
  "$@" </dev/null >"$W/out/$name.stdout" 2>"$W/out/$name.stderr"; RC=$?
  e=$(date +%s%N)
  SECS=$(awk -v a="$s" -v b="$e" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
  cat "$W/out/$name.stdout" "$W/out/$name.stderr" >"$W/out/$name"
  OUT=$(cat "$W/out/$name"); echo "$RC" >"$W/rc/$name"; echo "$SECS" >"$W/out/$name.secs"
}
# refused_clean NAME PATTERN: the run NAME was refused cleanly, said PATTERN (ERE), showed no secret.
refused_clean() {
  OUT=$(cat "$W/out/$1"); RC=$(cat "$W/rc/$1")
  clean_refusal && grep -qE "$2" <<<"$OUT" && ! grep -qF -f <(S) <<<"$OUT" && ! grep -qF -f "$W/passwords" <<<"$OUT"
}
# A refusal is clean: nonzero, not a panic (101) or a signal or a timeout, no backtrace.
clean_refusal() { [ "$RC" -ne 0 ] && [ "$RC" -ne 101 ] && [ "$RC" -lt 124 ] && ! grep -qiE 'panick|backtrace|RUST_BACKTRACE' <<<"$OUT"; }
S() { grep -v '^$' "$W/secrets"; }   # every secret of the run, one a line
first() { head -n1 <<<"$OUT" | cut -c1-"${1:-110}"; }
secs_le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
mode() { stat -c %a "$1"; }

cat >"$W/h.py" <<'PY'
import random, socket, struct, sys, threading, time

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

def serve(port, ready, handler):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(port)))
    srv.listen(64)
    open(ready, "w").close()
    while True:
        c, _ = srv.accept()
        threading.Thread(target=handler, args=(c,), daemon=True).start()

def recv_exact(c, n):
    b = b""
    while len(b) < n:
        chunk = c.recv(n - len(b))
        if not chunk:
            raise EOFError
        b += chunk
    return b

def fakepg(port, ready, capture):
    """A PostgreSQL server that asks for a cleartext password and refuses it (28P01), writing
    each password it was sent to CAPTURE: what a server with password auth answers."""
    def handle(c):
        try:
            n = struct.unpack(">I", recv_exact(c, 4))[0]
            body = recv_exact(c, n - 4)
            if struct.unpack(">I", body[:4])[0] == 80877103:  # SSLRequest: no TLS here
                c.sendall(b"N")
                n = struct.unpack(">I", recv_exact(c, 4))[0]
                body = recv_exact(c, n - 4)
            parts = body[4:].split(b"\0")
            user = parts[parts.index(b"user") + 1].decode() if b"user" in parts else "?"
            c.sendall(b"R" + struct.pack(">II", 8, 3))
            assert recv_exact(c, 1) == b"p"
            n = struct.unpack(">I", recv_exact(c, 4))[0]
            with open(capture, "ab") as f:
                f.write(recv_exact(c, n - 4).rstrip(b"\0") + b"\n")
            fields = b"SFATAL\0VFATAL\0C28P01\0M" + f'password authentication failed for user "{user}"'.encode() + b"\0\0"
            c.sendall(b"E" + struct.pack(">I", len(fields) + 4) + fields)
        except Exception:  # noqa: BLE001
            pass
        finally:
            time.sleep(0.1)
            c.close()
    serve(port, ready, handle)

def hole(port, ready):
    """Accepts TCP connections and never answers."""
    held = []
    def handle(c):
        held.append(c)
        time.sleep(3600)
    serve(port, ready, handle)

def http(port, ready, status, delay="0", body='{"status":"ok"}'):
    """Answers every request with STATUS after DELAY seconds."""
    def handle(c):
        try:
            c.recv(65536)
            time.sleep(float(delay))
            b = body.encode()
            c.sendall(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(b)}\r\nConnection: close\r\n\r\n".encode() + b)
        except Exception:  # noqa: BLE001
            pass
        finally:
            c.close()
    serve(port, ready, handle)

getattr(sys.modules[__name__], sys.argv[1])(*sys.argv[2:])
PY
# bg_py NAME ARGS...: a helper server in the background, its pid in PIDS; waits until it listens.
bg_py() {
  local name=$1; shift
  rm -f "$W/setup/$name.ready"
  python3 "$W/h.py" "$@" >"$W/log/$name.out" 2>&1 &
  PIDS="$PIDS $!"
  for _ in $(seq 50); do [ -e "$W/setup/$name.ready" ] && return 0; sleep 0.1; done
  echo "helper $name did not start"; return 1
}

# req NAME METHOD PATH [curl args]: status in $ST, body in $B, problem code in $CODE.
req() {
  local name=$1 m=$2 p=$3; shift 3
  ST=$(curl -s --max-time 20 -o "$W/out/$name.body" -w '%{http_code}' -X "$m" "$URL$p" "$@")
  B=$(cat "$W/out/$name.body"); CODE=$(jq -r '.code? // empty' <<<"$B" 2>/dev/null)
}
tok() { # NAME KEY BODY: POST /v1/tokens
  req "$1" POST /v1/tokens -H "$(key "$2")" "${JSON[@]}" --data-binary "$3"
}
j() { jq -c "$@" <<<"$B" 2>/dev/null; }

# start NAME PORT ENV... -- ARGS...: `serve` with only ENV added; waits for "strongroom serving"
# or "strongroom sealed" in its log; pid in $SP.
start() {
  local name=$1 port=$2; shift 2
  local envs=(); while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  env "${envs[@]}" "$BIN" serve --listen "127.0.0.1:$port" --rate-limit-per-second 0 "$@" \
    >>"$W/log/$name.out" 2>>"$W/log/$name.err" &
  SP=$!; PIDS="$PIDS $SP"
  for _ in $(seq 200); do
    grep -qE '"message":"strongroom (sealed|serving)' "$W/log/$name.out" && return 0
    kill -0 "$SP" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
stop() {
  kill "$1" 2>/dev/null
  gone_within 5 "$1" || kill -KILL "$1" 2>/dev/null
  wait "$1" 2>/dev/null
}
pfield() { jq -r ".$1 // empty" "$W/setup/$2.json"; }

# --- Setup -------------------------------------------------------------------------------
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release --locked first"; exit 1; }
cat >"$W/policies.toml" <<'TOML'
[[policy]]
name = "checkout"
roles = ["detokenizer"]
purposes = ["payment_authorization"]
approvals = 0
max_duration_seconds = 3600
max_uses = 1000
any_token = true
TOML
psql "$ADMINDB" -qtAc "create database $DB" >/dev/null || exit 1
psql "$ADMINDB" -qtAc "create role $ROLE login password '$PW'" >/dev/null || exit 1
export DATABASE_URL=${ADMINDB%/*}/$DB
export STRONGROOM_AUDIT_CHECKPOINT_FILE=$W/checkpoints.jsonl
KF=$W/keys/master.key
"$BIN" keygen --out "$KF" >"$W/setup/keygen" 2>&1 || { echo "keygen --out failed: $(cat "$W/setup/keygen")"; exit 1; }
KEY=$(tr -d '\n' <"$KF")
printf '%s\n' "$KEY" >"$W/secrets"
STRONGROOM_MASTER_KEY_FILE=$KF "$BIN" migrate >/dev/null || { echo "migrate failed"; exit 1; }
KFE=(STRONGROOM_MASTER_KEY_FILE="$KF")
mk() { # FILE TENANT NAME ROLE [--totp]
  local f=$1; shift
  env "${KFE[@]}" "$BIN" principal create --tenant "$1" --name "$2" --role "$3" "${@:4}" --json >"$W/setup/$f.json" 2>"$W/setup/$f.err" </dev/null
  pfield key "$f" >>"$W/secrets"; pfield totp_secret "$f" >>"$W/secrets"
}
mk acme-checkout acme checkout tokenizer
mk acme-payments acme payments detokenizer
mk acme-alice acme alice requester --totp
mk acme-bob acme bob approver --totp
mk globex-checkout globex checkout tokenizer
mk globex-ops globex ops admin
ATOK=$(pfield key acme-checkout); GTOK=$(pfield key globex-checkout)
ALICE_ID=$(pfield id acme-alice); ALICE_SECRET=$(pfield totp_secret acme-alice)
[ -n "$ATOK" ] && [ -n "$GTOK" ] && [ -n "$ALICE_ID" ] && [ -n "$ALICE_SECRET" ] || { echo "setup: principal create failed: $(cat "$W"/setup/*.err)"; exit 1; }
# Key hashes as stored (hex and base64), to look for in listings.
psql "$DATABASE_URL" -qtAc "select encode(key_hash, 'hex'), encode(key_hash, 'base64') from principals" |
  tr '|' '\n' | grep -v '^$' >>"$W/secrets"
grep -v '^$' "$W/secrets" >"$W/secrets.tmp" && mv "$W/secrets.tmp" "$W/secrets"
start main "$P_MAIN" "${KFE[@]}" -- --policy-file "$W/policies.toml" || { echo "the vault did not start: $(tail -n3 "$W/log/main.out" "$W/log/main.err")"; exit 1; }
MAINPID=$SP
echo "setup: database $DB, key file $(basename "$KF"), six principals in acme and globex, a vault on :$P_MAIN"

# --- 1. The master key in a file ------------------------------------------------------------------
echo "== 1. keygen --out, --keep-existing and STRONGROOM_MASTER_KEY_FILE"
K1=$W/keys/umask000.key
run keygen-umask sh -c "umask 000; exec '$BIN' keygen --out '$K1'"
K1V=$(tr -d '\n' <"$K1" 2>/dev/null); printf '%s\n' "$K1V" >>"$W/secrets"
check "keygen --out under umask 000: exit 0, file mode $(mode "$K1" 2>/dev/null) (want 600), one base64 line of 44 characters" \
  '[ $RC = 0 ] && [ "$(mode "$K1")" = 600 ] && [ "$(wc -l <"$K1")" = 1 ] && grep -qE "^[A-Za-z0-9+/]{43}=$" "$K1"'
check "keygen --out prints where and a fingerprint, never the key" '! grep -qF "$K1V" <<<"$OUT" && grep -qE "fingerprint [0-9a-f]{12}" <<<"$OUT"'
SUM=$(sha256sum <"$K1")
run keygen-again "$BIN" keygen --out "$K1"
check "keygen --out onto an existing key file: refused, file unchanged: $(first 80)" \
  'clean_refusal && grep -q "not overwritten" <<<"$OUT" && [ "$(sha256sum <"$K1")" = "$SUM" ]'
run keygen-keep "$BIN" keygen --out "$K1" --keep-existing
check "keygen --out --keep-existing on a valid key: exit 0, kept, unchanged, key not printed" \
  '[ $RC = 0 ] && grep -q "kept" <<<"$OUT" && [ "$(sha256sum <"$K1")" = "$SUM" ] && ! grep -qF "$K1V" <<<"$OUT"'
K2=$W/keys/first-start.key
run keygen-keep-new sh -c "umask 000; exec '$BIN' keygen --out '$K2' --keep-existing"
printf '%s\n' "$(tr -d '\n' <"$K2" 2>/dev/null)" >>"$W/secrets"
check "keygen --keep-existing where no file is (a container's first start): a new 0600 file even under umask 000" \
  '[ $RC = 0 ] && [ "$(mode "$K2")" = 600 ] && grep -qE "^[A-Za-z0-9+/]{43}=$" "$K2"'
bad=""
GARB="GarbageNotAKey${$}Qx"
printf '%s\n' "$GARB" >"$W/keys/garbage"
printf '%s\n' "$(head -c 32 /dev/zero | base64)" >"$W/keys/zeros"
printf '%s\n' "$(printf 'ab%.0s' $(seq 16) | base64)" >"$W/keys/pattern"
printf 'strongroom-dev-key:%s\n' "$(head -c 32 /dev/urandom | base64)" >"$W/keys/devkey"
printf '%s\n' "$(head -c 16 /dev/urandom | base64)" >"$W/keys/short"
chmod 600 "$W"/keys/garbage "$W"/keys/zeros "$W"/keys/pattern "$W"/keys/devkey "$W"/keys/short
for f in garbage zeros pattern devkey short; do
  body=$(tr -d '\n' <"$W/keys/$f"); printf '%s\n' "${body#strongroom-dev-key:}" >>"$W/secrets"
  S0=$(sha256sum <"$W/keys/$f")
  run "keep-$f" "$BIN" keygen --out "$W/keys/$f" --keep-existing
  { clean_refusal && ! grep -qF "${body#strongroom-dev-key:}" <<<"$OUT" && ! grep -qF "${body:0:12}" <<<"$OUT" \
    && [ "$(sha256sum <"$W/keys/$f")" = "$S0" ] && ! grep -q kept <<<"$OUT"; } || bad="$bad $f:$RC"
done
check "--keep-existing on garbage, all-zero, repeated-pattern, development and 16-byte keys: refused, content never printed, file untouched${bad}" '[ -z "$bad" ]'
note "--keep-existing on garbage says: $(head -n1 "$W/out/keep-garbage" | cut -c1-150)"
check "...and those refusals name the file the key was read from, not STRONGROOM_MASTER_KEY (which is not set)" \
  '! cat "$W"/out/keep-garbage "$W"/out/keep-zeros "$W"/out/keep-pattern "$W"/out/keep-short | grep -q "STRONGROOM_MASTER_KEY "' 
cp "$K1" "$W/keys/open644"; chmod 644 "$W/keys/open644"
run keep-open "$BIN" keygen --out "$W/keys/open644" --keep-existing
check "--keep-existing on a valid key that others can read (0644): refused, not 'kept'" 'clean_refusal && ! grep -q kept <<<"$OUT"'
run keygen-nodir "$BIN" keygen --out "$W/no/such/dir/master.key"
check "keygen --out into a directory that does not exist: a clear error (path, OS reason), nothing created: $(first 90)" \
  'clean_refusal && grep -q "$W/no/such/dir/master.key" <<<"$OUT" && grep -qi "no such file or directory" <<<"$OUT" && [ ! -e "$W/no" ]'
ln -s "$W/keys/planted-target" "$W/keys/dangling"
run keygen-dangling "$BIN" keygen --out "$W/keys/dangling"
check "keygen --out onto a dangling symlink an attacker planted: refused, its target not created" \
  'clean_refusal && [ ! -e "$W/keys/planted-target" ]'
run keygen-out-shares "$BIN" keygen --out "$W/keys/never" --shares 3 --threshold 2
check "keygen --out with --shares: refused, no file" 'clean_refusal && [ ! -e "$W/keys/never" ]'

# The five commands that read the key, each with FILE as STRONGROOM_MASTER_KEY_FILE (and maybe more env).
U=0
five() { # TAG FILE [ENV...]: runs them; outputs in $W/out/five-TAG-*
  local tag=$1 f=$2; shift 2
  U=$((U + 1))
  run "five-$tag-serve" env STRONGROOM_MASTER_KEY_FILE="$f" "$@" timeout 8 "$BIN" serve --listen "127.0.0.1:$P_DEAD" --policy-file "$W/policies.toml"
  run "five-$tag-migrate" env STRONGROOM_MASTER_KEY_FILE="$f" "$@" "$BIN" migrate
  run "five-$tag-create" env STRONGROOM_MASTER_KEY_FILE="$f" "$@" "$BIN" principal create --tenant acme --name "probe-$tag-$U" --role requester --totp
  run "five-$tag-status" env STRONGROOM_MASTER_KEY_FILE="$f" "$@" "$BIN" keys status
  run "five-$tag-verify" env STRONGROOM_MASTER_KEY_FILE="$f" "$@" "$BIN" audit verify
}
# all_refused TAG PATTERN: each of the five refused cleanly, saying PATTERN, never a secret.
all_refused() {
  local c bad=""
  for c in serve migrate create status verify; do refused_clean "five-$1-$c" "$2" || bad="$bad $c:$RC"; done
  printf '%s' "$bad"
}
for m in 640 604 660 644 666; do
  cp "$KF" "$W/keys/m$m"; chmod "$m" "$W/keys/m$m"
  five "m$m" "$W/keys/m$m"
  bad=$(all_refused "m$m" "mode 0$m.*chmod 600")
  check "a key file with mode 0$m: serve, migrate, principal create --totp, keys status, audit verify all refuse it (mode named, chmod 600 advised, key not shown)${bad:+: not by$bad}" '[ -z "$bad" ]'
done
note "0640 says: $(head -n1 "$W/out/five-m640-status" | cut -c1-140)"
for m in 400 700; do
  cp "$KF" "$W/keys/m$m"; chmod "$m" "$W/keys/m$m"
  run "owner-only-$m" env STRONGROOM_MASTER_KEY_FILE="$W/keys/m$m" "$BIN" keys status --json
  check "a key file with mode 0$m (owner only): accepted (keys status opens the stored keys)" \
    '[ $RC = 0 ] && [ "$(jq -r .master_key.opens_stored_keys "$W/out/owner-only-$m.stdout")" = true ]'
done
run key-file-status env STRONGROOM_MASTER_KEY_FILE="$KF" "$BIN" keys status --json
run key-file-status-text env STRONGROOM_MASTER_KEY_FILE="$KF" "$BIN" keys status
check "keys status names the source as the file: --json '$(jq -r .master_key.source "$W/out/key-file-status.stdout" 2>/dev/null)', text '$(grep -m1 '^master key' "$W/out/key-file-status-text.stdout" | cut -c1-60)'" \
  '[ "$(jq -r .master_key.source "$W/out/key-file-status.stdout")" = "file (STRONGROOM_MASTER_KEY_FILE)" ] && grep -q "^master key: file" "$W/out/key-file-status-text.stdout"'
FPR=$(jq -r .master_key.fingerprint "$W/out/key-file-status.stdout")
# A symlink to an owner-only file, and to one others can read.
ln -s "$KF" "$W/keys/link-to-600"
run symlink-600 env STRONGROOM_MASTER_KEY_FILE="$W/keys/link-to-600" "$BIN" keys status --json
check "a symlink (mode 0777 itself) to a 0600 key file: accepted, the target's mode is what counts (fingerprint $FPR)" \
  '[ $RC = 0 ] && [ "$(jq -r .master_key.fingerprint "$W/out/symlink-600.stdout")" = "$FPR" ]'
ln -s "$W/keys/m644" "$W/keys/link-to-644"
run symlink-644 env STRONGROOM_MASTER_KEY_FILE="$W/keys/link-to-644" "$BIN" keys status
check "a symlink to a 0644 key file: refused (mode 0644): $(first 90)" 'clean_refusal && grep -q "0644" <<<"$OUT"'
mkdir -m 700 "$W/keys/adir"
run key-dir env STRONGROOM_MASTER_KEY_FILE="$W/keys/adir" "$BIN" keys status
check "a directory (0700) as the key file: refused with the OS reason: $(first 90)" 'clean_refusal && grep -qi "directory" <<<"$OUT"'
mkdir -m 755 "$W/keys/adir755"
run key-dir755 env STRONGROOM_MASTER_KEY_FILE="$W/keys/adir755" "$BIN" keys status
check "a directory (0755) as the key file: refused" 'clean_refusal'
note "a 0755 directory as the key file says: $(first 140)"
run key-devnull env STRONGROOM_MASTER_KEY_FILE=/dev/null "$BIN" keys status
check "/dev/null as the key file: refused" 'clean_refusal'
check "...as not a regular file, not with advice to chmod the system's /dev/null (root following it breaks every other user): $(first 120)" \
  '! grep -q "chmod 600 /dev/null" <<<"$OUT"'
check "a 0755 directory as the key file: not told to \`chmod 600\` the directory (it would then fail as a directory)" '! grep -q "chmod 600" "$W/out/key-dir755"'
: >"$W/keys/empty"; printf ' \n\r\n\t\n' >"$W/keys/blank"; chmod 600 "$W/keys/empty" "$W/keys/blank"
run key-empty env STRONGROOM_MASTER_KEY_FILE="$W/keys/empty" "$BIN" keys status
check "an empty key file: refused, says empty and how to write one: $(first 90)" 'clean_refusal && grep -q "is empty" <<<"$OUT" && grep -q "keygen --out" <<<"$OUT"'
run key-blank env STRONGROOM_MASTER_KEY_FILE="$W/keys/blank" "$BIN" keys status
check "a key file of whitespace only: refused as empty" 'clean_refusal && grep -q "is empty" <<<"$OUT"'
bad=""
for v in trailing-spaces crlf leading blank-lines tabs; do
  case $v in
    trailing-spaces) printf '%s   ' "$KEY" ;; crlf) printf '%s\r\n' "$KEY" ;; leading) printf '  \n%s\n' "$KEY" ;;
    blank-lines) printf '%s\n\n\n' "$KEY" ;; tabs) printf '\t%s\t\n' "$KEY" ;;
  esac >"$W/keys/pad-$v"
  chmod 600 "$W/keys/pad-$v"
  run "pad-$v" env STRONGROOM_MASTER_KEY_FILE="$W/keys/pad-$v" "$BIN" keys status --json
  { [ $RC = 0 ] && [ "$(jq -r .master_key.fingerprint "$W/out/pad-$v.stdout" 2>/dev/null)" = "$FPR" ]; } || bad="$bad $v:$RC"
done
check "the valid key with trailing spaces, CRLF, leading blank line, trailing blank lines, tabs: each accepted as the same key${bad}" '[ -z "$bad" ]'
printf '%s\n%s\n' "${KEY:0:20}" "${KEY:20}" >"$W/keys/split-line"; chmod 600 "$W/keys/split-line"
run key-split-line env STRONGROOM_MASTER_KEY_FILE="$W/keys/split-line" "$BIN" keys status --json
note "the key broken over two lines: exit $RC ($(first 100))"
run sealed-with-file env STRONGROOM_MASTER_KEY_FILE="$KF" timeout 8 "$BIN" serve --sealed --listen "127.0.0.1:$P_DEAD"
check "serve --sealed with STRONGROOM_MASTER_KEY_FILE set: refused, the file's variable named: $(first 80)" 'clean_refusal && grep -q STRONGROOM_MASTER_KEY_FILE <<<"$OUT"'
run key-missing env STRONGROOM_MASTER_KEY_FILE="$W/keys/nope.key" "$BIN" keys status
check "a key file that does not exist: refused, the path and the OS reason: $(first 100)" 'clean_refusal && grep -q "nope.key" <<<"$OUT" && grep -qi "no such file" <<<"$OUT"'
five both "$KF" STRONGROOM_MASTER_KEY="$KEY"
bad=$(all_refused both "keep one")
check "STRONGROOM_MASTER_KEY and STRONGROOM_MASTER_KEY_FILE both set (the same key): all five commands refuse (keep one)${bad:+: not by$bad}" '[ -z "$bad" ]'
five zeros "$W/keys/zeros"
bad=$(all_refused zeros ".")
check "an all-zero (weak) key in a 0600 file: all five refuse, never showing it${bad:+: not by$bad}" '[ -z "$bad" ]'
five devkey "$W/keys/devkey"
bad=""; for c in serve migrate create; do refused_clean "five-devkey-$c" "development key" || bad="$bad $c:$RC"; done
check "a development key in the 0600 file: serve, migrate and principal create --totp refuse it (keys status and audit verify take dev keys, as documented)${bad:+: not by$bad}" '[ -z "$bad" ]'
bad=""; for c in serve migrate create; do grep -q "keys/devkey" "$W/out/five-devkey-$c" || bad="$bad $c"; done
check "...naming the file, not STRONGROOM_MASTER_KEY (which is not set)${bad:+: not named by$bad}: $(head -n1 "$W/out/five-devkey-serve" | cut -c1-90)" '[ -z "$bad" ]'
head -c 20000000 /dev/zero | tr '\0' 'A' >"$W/keys/huge"; chmod 600 "$W/keys/huge"
run key-huge env STRONGROOM_MASTER_KEY_FILE="$W/keys/huge" "$BIN" keys status
check "a 20 MB key file: refused within 5 s ($SECS s), not echoed" 'clean_refusal && secs_le "$SECS" 5 && ! grep -q AAAAAAAAAAAAAAAA <<<"$OUT" && [ ${#OUT} -lt 2000 ]'
run key-empty-var env STRONGROOM_MASTER_KEY_FILE= "$BIN" keys status --json
note "STRONGROOM_MASTER_KEY_FILE set to nothing: treated as unset (exit $RC, source $(jq -r '.master_key.source? // .master_key // "-"' "$W/out/key-empty-var.stdout" 2>/dev/null | head -c 60))"
mkfifo -m 600 "$W/keys/fifo"
run key-fifo env STRONGROOM_MASTER_KEY_FILE="$W/keys/fifo" timeout 4 "$BIN" keys status
note "a FIFO (0600) as the key file: exit $RC after $SECS s$([ "$RC" = 124 ] && echo ' — the command blocks in open() waiting for a writer, forever without timeout')"
cp "$KF" "$W/keys/owned-by-nobody"; chmod 600 "$W/keys/owned-by-nobody"
if chown nobody "$W/keys/owned-by-nobody" 2>/dev/null; then
  run key-other-owner env STRONGROOM_MASTER_KEY_FILE="$W/keys/owned-by-nobody" "$BIN" keys status
  note "a 0600 key file owned by another user (nobody), read as $(id -un): exit $RC — only the mode is checked, not the owner (OpenSSH does the same for a key another user owns), but that user can replace the key"
fi
check "no command of this section printed any key's base64 or its first 12 characters" \
  '! cat "$W"/out/* | grep -qF -f <(S) && ! cat "$W"/out/* | grep -qF "${KEY:0:12}"'

# --- 2. principal list and show ------------------------------------------------------------------
echo "== 2. principal list / show"
run list-all "$BIN" principal list
run list-json "$BIN" principal list --json
run list-acme "$BIN" principal list --tenant acme --json
run show-id "$BIN" principal show --id "$ALICE_ID"
run show-id-json "$BIN" principal show --id "$ALICE_ID" --json
run show-name "$BIN" principal show --tenant acme --name alice --json
LJ=$W/out/list-json.stdout
check "list --json is valid JSON: $(jq '.principals | length' "$LJ" 2>/dev/null) principals, each with id, tenant, name, roles, second factor, times" \
  'jq -e ".principals | length >= 6 and all(.[]; has(\"id\") and has(\"tenant\") and has(\"name\") and has(\"roles\") and has(\"second_factor\") and has(\"created_at\") and has(\"expires_at\") and has(\"disabled_at\"))" "$LJ" >/dev/null'
check "no listing has a field for a key, a hash or a secret (fields: $(jq -r '[.principals[0] | keys[]] | join(",")' "$LJ" 2>/dev/null))" \
  '! jq -r "[.principals[] | keys[]] | unique[]" "$LJ" | grep -qiE "key|hash|secret|otpauth"'
check "no list or show output (table, JSON) holds an API key, a key hash (hex or base64) or a TOTP secret" \
  '! cat "$W"/out/list-* "$W"/out/show-* | grep -qF -f <(S)'
check "list --tenant acme: only acme's principals ($(jq -r '[.principals[].name] | join(",")' "$W/out/list-acme.stdout" 2>/dev/null))" \
  '[ $(jq "[.principals[] | select(.tenant != \"acme\")] | length" "$W/out/list-acme.stdout") = 0 ] && [ $(jq ".principals | length" "$W/out/list-acme.stdout") -ge 4 ]'
check "show --id and show --tenant --name --json: alice of acme, second factor totp, valid JSON" \
  'grep -q "^name: *alice" "$W/out/show-id.stdout" && [ "$(jq -r "[.id, .tenant, .name, .second_factor] | join(\" \")" "$W/out/show-name.stdout")" = "$ALICE_ID acme alice totp" ] && jq -e . "$W/out/show-id-json.stdout" >/dev/null'
check "the table shows second factors: alice totp, checkout none" \
  'grep -E "acme +alice " "$W/out/list-all.stdout" | grep -q " totp " && grep -E "acme +checkout " "$W/out/list-all.stdout" | grep -q " none "'
GLOBEX_IDS=$(jq -r '.principals[] | select(.tenant == "globex") | .id' "$LJ")
bad=""
U0=$((U + 1))
for t in "' or 1=1 --" "acme' --" "acme' or '1'='1" "%" "*" "ACME" "acme " "" "globex\\"; do
  run "list-inject-$((++U))" "$BIN" principal list --tenant "$t" --json
  { clean_refusal && ! grep -qF -f <(jq -r '.principals[].id' "$LJ") <<<"$OUT"; } || bad="$bad [$t]:$RC"
done
check "list --tenant with SQL injection, wildcards, other case, a trailing space, empty: refused (no tenant), no principal of any tenant printed${bad}" '[ -z "$bad" ]'
note "list --tenant \"' or 1=1 --\" says: $(head -n1 "$W/out/list-inject-$U0" | cut -c1-100)"
run show-cross "$BIN" principal show --tenant globex --name alice
check "show --tenant globex --name alice (alice is acme's): refused, nothing of alice: $(first 80)" \
  'clean_refusal && ! grep -qF "$ALICE_ID" <<<"$OUT"'
run show-cross-inject "$BIN" principal show --tenant "' or 1=1 --" --name alice
check "show --tenant \"' or 1=1 --\" --name alice: refused, nothing of alice" 'clean_refusal && ! grep -qF "$ALICE_ID" <<<"$OUT"'
run show-random "$BIN" principal show --id "$(cat /proc/sys/kernel/random/uuid)"
check "show --id of no principal: refused" 'clean_refusal && grep -q "no principal" <<<"$OUT"'
run show-badid "$BIN" principal show --id "1 or 1=1"
check "show --id that is not a UUID: refused by the argument parser" 'clean_refusal'
run show-both "$BIN" principal show --id "$ALICE_ID" --tenant globex --name alice
check "show --id with --tenant --name: refused (one or the other)" 'clean_refusal && ! grep -q "^name:" <<<"$OUT"'
run show-name-only "$BIN" principal show --name alice
check "show --name without --tenant: refused (a name is unique in a tenant only)" 'clean_refusal && ! grep -qF "$ALICE_ID" <<<"$OUT"'
GOPS=$(pfield id globex-ops)
env "${KFE[@]}" "$BIN" principal disable --id "$GOPS" >/dev/null 2>&1 </dev/null
run show-disabled "$BIN" principal show --id "$GOPS" --json
check "a disabled principal shows when it was disabled" '[ "$(jq -r ".disabled_at // empty" "$W/out/show-disabled.stdout")" != "" ]'
# Hostile names.
bad=""; i=0
for nm in $'esc\e[31mRED\e[0m' $'new\nline' $'tab\tname' $'bell\a' $'c1\xc2\x9b31m' $'del\x7f' ' leading' 'trailing ' "$(printf 'n%.0s' $(seq 101))"; do
  i=$((i + 1))
  run "hostile-$i" env "${KFE[@]}" "$BIN" principal create --tenant acme --name "$nm" --role tokenizer --json
  { clean_refusal && ! grep -q '"key"' <<<"$OUT"; } || bad="$bad #$i:$RC"
done
run hostile-tenant env "${KFE[@]}" "$BIN" principal create --tenant $'ev\e]0;pwned\aX' --name x --role tokenizer --json
clean_refusal || bad="$bad tenant:$RC"
check "names with ESC sequences, newline, tab, BEL, C1 CSI, DEL, edge spaces, 101 characters, and a tenant with an OSC title sequence: refused${bad}" '[ -z "$bad" ]'
LONG="$(printf 'L%.0s' $(seq 100))"
env "${KFE[@]}" "$BIN" principal create --tenant acme --name "$LONG" --role tokenizer --json >"$W/setup/long.json" 2>&1 </dev/null
env "${KFE[@]}" "$BIN" principal create --tenant acme --name $'\xe2\x80\xaegnp.exe\xe2\x80\x8b' --role tokenizer --json >"$W/setup/bidi.json" 2>&1 </dev/null
env "${KFE[@]}" "$BIN" principal create --tenant $'\xe2\x80\xaeemca' --name checkout --role tokenizer --json >"$W/setup/bidi-tenant.json" 2>&1 </dev/null
SHELLNAME='`touch '"$W"'/pwned1`;$(touch '"$W"'/pwned2)|&>x'
env "${KFE[@]}" "$BIN" principal create --tenant acme --name "$SHELLNAME" --role tokenizer --json >"$W/setup/shell.json" 2>&1 </dev/null
for f in long bidi bidi-tenant shell; do pfield key "$f" >>"$W/secrets"; done
run list-hostile "$BIN" principal list
run list-hostile-json "$BIN" principal list --json
check "after a 100-character and bidi-override names: the table has no raw ESC/C1 byte, the JSON still parses" \
  '! LC_ALL=C grep -qP "\x1b|\xc2[\x80-\x9f]" "$W/out/list-hostile.stdout" && jq -e ".principals | length > 6" "$W/out/list-hostile-json.stdout" >/dev/null'
check "a name of shell metacharacters is listed literally and nothing ran" 'grep -qF "$SHELLNAME" "$W/out/list-hostile.stdout" && [ ! -e "$W/pwned1" ] && [ ! -e "$W/pwned2" ]'
check "...and holds no key of those either" '! cat "$W"/out/list-hostile* | grep -qF -f <(S)'
W_HDR=$(head -n1 "$W/out/list-hostile.stdout" | wc -c); W_LONG=$(grep -F "$LONG" "$W/out/list-hostile.stdout" | wc -c)
note "table: header line $W_HDR bytes; the 100-character name's line $W_LONG bytes, its columns pushed right (fixed widths, no truncation)"
if grep -q $'\xe2\x80\xae' "$W/out/list-hostile.stdout"; then
  note "a name and a tenant with U+202E RIGHT-TO-LEFT OVERRIDE (not a control character, so accepted) are printed raw in the table and in JSON: a terminal shows them reversed ('$(grep -o $'\xe2\x80\xae[^ ]*' "$W/out/list-hostile.stdout" | head -n1 | od -An -c | tr -s ' ' | head -c 60)')"
fi

# --- 3. Clear messages: the database, the policy file, --listen -----------------------------------
echo "== 3. messages for an unusable database, policy file trouble, --listen"
bg_py fakepg fakepg "$P_FAKEPG" "$W/setup/fakepg.ready" "$W/setup/fakepg.passwords" || exit 1
bg_py hole hole "$P_HOLE" "$W/setup/hole.ready" || exit 1
PWENC="Zq%40${$}pw"; PWDEC="Zq@${$}pw"   # a percent-encoded password and what it decodes to
printf '%s\n%s\n%s\n' "$PW" "$PWENC" "$PWDEC" >"$W/passwords"
# six ENV-FREE TAG URL: the six commands with DATABASE_URL=URL; outputs in $W/out/db-TAG-*; the
# longest time in $MAXSECS.
six() {
  local tag=$1 u=$2 c
  MAXSECS=0
  for c in migrate serve list status verify guard; do
    case $c in
      migrate) run "db-$tag-$c" env "${KFE[@]}" DATABASE_URL="$u" "$BIN" migrate ;;
      serve) run "db-$tag-$c" env "${KFE[@]}" DATABASE_URL="$u" timeout 30 "$BIN" serve --listen "127.0.0.1:$P_DEAD" --policy-file "$W/policies.toml" ;;
      list) run "db-$tag-$c" env "${KFE[@]}" DATABASE_URL="$u" "$BIN" principal list ;;
      status) run "db-$tag-$c" env "${KFE[@]}" DATABASE_URL="$u" "$BIN" keys status ;;
      verify) run "db-$tag-$c" env "${KFE[@]}" DATABASE_URL="$u" "$BIN" audit verify ;;
      guard) run "db-$tag-$c" env "${KFE[@]}" DATABASE_URL="$u" "$BIN" guard list ;;
    esac
    secs_le "$SECS" "$MAXSECS" || MAXSECS=$SECS
  done
}
# six_ok TAG PATTERN: each refused cleanly, matching PATTERN (ERE), no password in any form.
six_ok() {
  local c bad=""
  for c in migrate serve list status verify guard; do refused_clean "db-$1-$c" "$2" || bad="$bad $c:$RC"; done
  printf '%s' "$bad"
}
declare -A DBURL=(
  [mysql]="mysql://root:$PW@127.0.0.1:3306/vault"
  [MYSQL]="MYSQL://root:$PW@127.0.0.1:3306/vault"
  [pgfoo]="postgres+foo://app:$PW@127.0.0.1:5432/$DB"
  [jdbc]="jdbc:postgresql://127.0.0.1:5432/$DB?user=app&password=$PW"
  [noscheme]="app:$PW@127.0.0.1:5432/$DB"
  [keyvalue]="host=127.0.0.1 user=app password=$PW dbname=$DB"
  [empty]=""
)
declare -A WANT=(
  [mysql]='unsupported database URL scheme `mysql:`' [MYSQL]='unsupported database URL scheme `mysql:`'
  [pgfoo]='unsupported database URL scheme `postgres\+foo:`' [jdbc]='unsupported database URL scheme `jdbc:`'
  [noscheme]='unsupported database URL scheme|not a database URL' [keyvalue]='not a database URL' [empty]='not a database URL|required'
)
for t in mysql MYSQL pgfoo jdbc noscheme keyvalue empty; do
  six "$t" "${DBURL[$t]}"
  bad=$(six_ok "$t" "${WANT[$t]}")
  check "DATABASE_URL ${t}: all six commands refuse by scheme, password never shown${bad:+: not$bad} ($(head -n1 "$W/out/db-$t-list" | cut -c1-70))" '[ -z "$bad" ]'
done
run db-flag "$BIN" principal list --database-url "mysql://root:$PW@127.0.0.1:3306/vault"
check "the same URL given as --database-url (the argument parser could echo it): refused, password not shown" 'clean_refusal && ! grep -qF -f "$W/passwords" <<<"$OUT"'
run db-badport env DATABASE_URL="postgres://app:$PW@127.0.0.1:notaport/$DB" "$BIN" principal list
check "a URL with a port that is not a number: refused, password not shown: $(first 90)" 'clean_refusal && ! grep -qF -f "$W/passwords" <<<"$OUT"'
note "a non-numeric port says: $(first 120)"
six refused "postgres://$ROLE:$PW@127.0.0.1:$P_NODB/$DB"
bad=$(six_ok refused "cannot connect to PostgreSQL at 127.0.0.1:$P_NODB: Connection refused")
check "nothing listening on the port: all six say where and the OS reason, no password${bad:+: not$bad}" '[ -z "$bad" ]'
check "...fast: the slowest of the six took $MAXSECS s (flagged above 2 s)" 'secs_le "$MAXSECS" 2'
six dns "postgres://$ROLE:$PW@no-such-host.invalid:5432/$DB"
bad=$(six_ok dns "no-such-host.invalid")
check "a host name that does not resolve: all six name the host and the resolver's reason, no password${bad:+: not$bad}" '[ -z "$bad" ]'
check "...fast: the slowest took $MAXSECS s (flagged above 2 s)" 'secs_le "$MAXSECS" 2'
note "bad host: $(head -n1 "$W/out/db-dns-list" | cut -c1-140)"
six missing "postgres://$ROLE:$PW@127.0.0.1:5432/$DBMISSING"
bad=$(six_ok missing "database \"$DBMISSING\" does not exist.*createdb -h 127.0.0.1 -p 5432 -O $ROLE $DBMISSING")
check "a database that does not exist: all six name it and give the createdb line (with its owner), no password${bad:+: not$bad}" '[ -z "$bad" ]'
check "...at once: the slowest took $MAXSECS s" 'secs_le "$MAXSECS" 2'
six wrongpw "postgres://app:$PWENC@127.0.0.1:$P_FAKEPG/$DB"
bad=$(six_ok wrongpw 'refused user "app": password authentication failed')
check "a refused password (a server with password auth): all six say which user was refused, never the password, raw or decoded${bad:+: not$bad}" '[ -z "$bad" ]'
check "...the fake server did receive the decoded password, so the case was real ($(sort -u "$W/setup/fakepg.passwords" 2>/dev/null | wc -l) distinct)" 'grep -qxF "$PWDEC" "$W/setup/fakepg.passwords"'
run db-realpw env "${KFE[@]}" DATABASE_URL="postgres://$ROLE:wrong-$PW@127.0.0.1:5432/$DB" "$BIN" principal list
note "the real server at 127.0.0.1 trusts local connections: role $ROLE with a wrong password is let in (then refused for rights, exit $RC); the password refusal above is a fake server's"
run db-norights-migrate env "${KFE[@]}" DATABASE_URL="postgres://$ROLE:$PW@127.0.0.1:5432/$DB" "$BIN" migrate
run db-norights-list env "${KFE[@]}" DATABASE_URL="postgres://$ROLE:$PW@127.0.0.1:5432/$DB" "$BIN" principal list
check "a role without rights on the schema (migrate run as the app role, a newcomer's slip): refused, naming the user, without PostgreSQL's internal source line: $(head -n1 "$W/out/db-norights-migrate" | cut -c1-110)" \
  'refused_clean db-norights-migrate . && refused_clean db-norights-list . && ! cat "$W"/out/db-norights-migrate "$W"/out/db-norights-list | grep -qE "at line [0-9]+" && grep -q "$ROLE" "$W/out/db-norights-migrate"'
six hole "postgres://app:$PW@127.0.0.1:$P_HOLE/$DB"
bad=$(six_ok hole "did not answer within")
check "a database that accepts TCP and never answers: all six give up with 'did not answer within', no password${bad:+: not$bad}" '[ -z "$bad" ]'
note "black-holed database: slowest $MAXSECS s$(secs_le "$MAXSECS" 2 || echo ' — FLAG: above 2 s (the CLI waits its 5 s pool wait, serve its request timeout)'); serve: $(grep -o 'within [0-9]* s' "$W/out/db-hole-serve" | head -n1)"
HOLE_CLI=0; for c in migrate list status verify guard; do t=$(cat "$W/out/db-hole-$c.secs"); secs_le "$t" "$HOLE_CLI" || HOLE_CLI=$t; done
check "...bounded by the wait they name: the CLI commands ${HOLE_CLI} s at most (5 s wait), serve $(cat "$W/out/db-hole-serve.secs") s (10 s request timeout)" \
  'secs_le "$HOLE_CLI" 6 && secs_le "$(cat "$W/out/db-hole-serve.secs")" 11'
six mariadb "postgres://app:$PW@127.0.0.1:3306/$DB"
if grep -q . "$W/out/db-mariadb-list"; then
  bad=$(six_ok mariadb ".")
  check "a postgres:// URL pointing at a MySQL server: refused quickly ($MAXSECS s), no password${bad:+: not$bad}" '[ -z "$bad" ] && secs_le "$MAXSECS" 6'
  note "postgres:// at a MySQL port says: $(head -n1 "$W/out/db-mariadb-list" | cut -c1-140)"
fi
check "no database message of this section holds the password, raw, encoded or decoded" '! cat "$W"/out/db-* | grep -qF -f "$W/passwords"'

# The policy file.
serve_policy() { # NAME POLICYFILE: serve that must refuse at once
  run "$1" env "${KFE[@]}" timeout 20 "$BIN" serve --listen "127.0.0.1:$P_DEAD" --policy-file "$2"
}
serve_policy pol-missing "$W/no-such-policies.toml"
check "a missing policy file: refused with its path and the OS reason: $(first 100)" \
  'clean_refusal && grep -q "cannot read the policy file $W/no-such-policies.toml: No such file or directory" <<<"$OUT"'
mkdir -p "$W/policy-dir"
serve_policy pol-dir "$W/policy-dir"
check "a directory as the policy file: refused with the OS reason: $(first 100)" 'clean_refusal && grep -qi "directory" <<<"$OUT"'
cp "$W/policies.toml" "$W/pol-000.toml"; chmod 000 "$W/pol-000.toml"
if [ "$(id -u)" = 0 ]; then
  start pol-000 "$P_LISTEN" "${KFE[@]}" -- --policy-file "$W/pol-000.toml"; RC=$?; P=$SP; stop "$P"
  check "a policy file with mode 000: running as root, the mode does not stop reading it (root ignores it), so serve starts" '[ $RC = 0 ]'
  note "as root an unreadable-by-mode policy file cannot be tested: root reads it anyway"
else
  serve_policy pol-000 "$W/pol-000.toml"
  check "an unreadable policy file (000): refused, Permission denied" 'clean_refusal && grep -qi "permission denied" <<<"$OUT"'
fi
cat >"$W/pol-type.toml" <<'TOML'
[[policy]]
name = "checkout"
roles = ["detokenizer"]
purposes = ["payment_authorization"]
approvals = 0
max_duration_seconds = 3600

[[policy]]
name = "support"
roles = ["requester"]
purposes = ["dispute"]
max_uses = "five"
TOML
serve_policy pol-type "$W/pol-type.toml"
check "a TOML type error: the policy (support) and the line (12) named: $(first 120)" 'clean_refusal && grep -q "support" <<<"$OUT" && grep -q "line 12" <<<"$OUT"'
printf '[[policy]]\nname = "checkout"\nroles = ["detokenizer"\npurposes = ["payment_authorization"]\n' >"$W/pol-syntax.toml"
serve_policy pol-syntax "$W/pol-syntax.toml"
check "a TOML syntax error (an unclosed array): the policy and a line named: $(first 120)" 'clean_refusal && grep -q "checkout" <<<"$OUT" && grep -qE "line [0-9]+" <<<"$OUT"'
printf '[[policy]]\nname = "checkout"\nroles = ["detokenizer"]\npurposes = ["x"]\nmax_duration_seconds = 60\nmaxx_uses = 3\n' >"$W/pol-unknown.toml"
serve_policy pol-unknown "$W/pol-unknown.toml"
check "an unknown field: refused, naming the policy and line 6: $(first 120)" 'clean_refusal && grep -q "checkout" <<<"$OUT" && grep -q "line 6" <<<"$OUT"'
printf '\xff\xfe[[policy]]\n' >"$W/pol-binary.toml"
serve_policy pol-binary "$W/pol-binary.toml"
check "a policy file that is not UTF-8: refused cleanly: $(first 100)" 'clean_refusal'
: >"$W/pol-empty.toml"
start pol-empty "$P_LISTEN" "${KFE[@]}" -- --policy-file "$W/pol-empty.toml"; RC=$?; P=$SP
check "an empty policy file: serve starts and logs a WARN 'no access policy'" \
  '[ $RC = 0 ] && grep "no access policy" "$W/log/pol-empty.out" | grep -q "\"level\":\"WARN\""'
stop "$P"
start pol-none "$P_LISTEN" "${KFE[@]}" --; RC=$?; P=$SP
check "no --policy-file at all: serve starts and warns the same" '[ $RC = 0 ] && grep -q "no access policy" "$W/log/pol-none.out"'
stop "$P"
check "the main vault (with policies) logged no such warning" '! grep -q "no access policy" "$W/log/main.out"'

# --listen.
listen_ok() { # NAME LISTEN: serve there, /healthz on 127.0.0.1:P_LISTEN answers
  env "${KFE[@]}" "$BIN" serve --listen "$2" --policy-file "$W/policies.toml" >"$W/log/$1.out" 2>"$W/log/$1.err" &
  local p=$! ok=1; PIDS="$PIDS $p"
  for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_LISTEN/healthz")" = 200 ] && { ok=0; break; }
    kill -0 "$p" 2>/dev/null || break; sleep 0.1
  done
  stop "$p"; return $ok
}
listen_ok listen-localhost "localhost:$P_LISTEN"; RC=$?
check "--listen localhost:$P_LISTEN: serves on loopback" '[ $RC = 0 ]'
listen_ok listen-LOCALHOST "LOCALHOST:$P_LISTEN"; RC=$?
check "--listen LOCALHOST:$P_LISTEN (host names are case-insensitive): serves" '[ $RC = 0 ]'
env "${KFE[@]}" STRONGROOM_LISTEN="localhost:$P_LISTEN" "$BIN" serve --policy-file "$W/policies.toml" >"$W/log/listen-env2.out" 2>&1 &
P=$!; PIDS="$PIDS $P"; ok=1
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$P_LISTEN/healthz" >/dev/null && { ok=0; break; }; kill -0 $P 2>/dev/null || break; sleep 0.1; done
stop "$P"
check "STRONGROOM_LISTEN=localhost:$P_LISTEN: serves" '[ $ok = 0 ]'
bad=""
for l in localhost "localhost:" "localhost:99999" "example.com:443" "0.0.0.0:$P_LISTEN" "localhost.localdomain:$P_LISTEN" "127.0.0.1"; do
  run "listen-$((++U))" env "${KFE[@]}" timeout 20 "$BIN" serve --listen "$l" --policy-file "$W/policies.toml"
  clean_refusal || bad="$bad [$l]:$RC"
  note "--listen $l: $(first 120)"
done
check "--listen localhost, 'localhost:', localhost:99999, example.com:443, 0.0.0.0:PORT without TLS, another host name, an IP without port: each refused${bad}" '[ -z "$bad" ]'
run listen-any-plain env "${KFE[@]}" timeout 20 "$BIN" serve --listen "0.0.0.0:$P_LISTEN" --policy-file "$W/policies.toml"
check "0.0.0.0 without TLS: refused, saying how (TLS, loopback or --force-plain-http)" 'clean_refusal && grep -q "tls-cert" <<<"$OUT" && grep -q "force-plain-http" <<<"$OUT"'

# --- 4. strongroom totp code and the dev banner ---------------------------------------------------
echo "== 4. totp code, dev-credentials.json, the dev banner"
D1=$W/dev1
env -u DATABASE_URL -u STRONGROOM_AUDIT_CHECKPOINT_FILE "$BIN" dev --listen "127.0.0.1:$P_DEV" --data-dir "$D1" >"$W/log/dev1.log" 2>&1 &
DEVPID=$!; PIDS="$PIDS $DEVPID"
for _ in $(seq 300); do grep -q 'Ctrl-C stops it' "$W/log/dev1.log" && curl -fs "http://127.0.0.1:$P_DEV/readyz" >/dev/null && break; sleep 0.1; done
check "strongroom dev starts and prints its banner" 'grep -q "Ctrl-C stops it" "$W/log/dev1.log"'
CRED=$D1/dev-credentials.json
jq -r '.principals[] | .key, (.totp_secret // empty)' "$CRED" >>"$W/secrets" 2>/dev/null
A_SECRET=$(jq -r '.principals[] | select(.name == "alice") | .totp_secret' "$CRED")
codes_now() { local t; t=$(date +%s); for d in -30 0 30; do oathtool --totp -b -N "@$((t + d))" "$1"; done; }
run totp-alice "$BIN" totp code alice --data-dir "$D1"
check "totp code alice: stdout is the 6-digit code alone ($(cat "$W/out/totp-alice.stdout")), RFC 6238 for her secret; the validity on stderr" \
  '[ $RC = 0 ] && [ "$(wc -l <"$W/out/totp-alice.stdout")" = 1 ] && grep -qxE "[0-9]{6}" "$W/out/totp-alice.stdout" && codes_now "$A_SECRET" | grep -qxF "$(cat "$W/out/totp-alice.stdout")" && grep -q "valid for" "$W/out/totp-alice.stderr"'
check "the code is not the secret, and the secret is not printed" '! grep -qF "$A_SECRET" <<<"$OUT"'
bad=""
for who in checkout payments compliance ops nobody "../alice" "" "ALICE" "alice "; do
  run "totp-$((++U))" "$BIN" totp code "$who" --data-dir "$D1"
  { clean_refusal && [ ! -s "$W/out/totp-$U.stdout" ]; } || bad="$bad [$who]:$RC"
done
check "totp code for checkout, payments, compliance, ops (no second factor), nobody, ../alice, '', ALICE, 'alice ': refused, nothing on stdout${bad}" '[ -z "$bad" ]'
run totp-nodir "$BIN" totp code alice --data-dir "$W/nowhere"
check "totp code with a directory that is no dev vault: refused, says to run dev: $(first 80)" 'clean_refusal && grep -q "strongroom dev" <<<"$OUT"'
run totp-prod "$BIN" totp code alice --data-dir "$W/keys"
check "totp code with the production key directory: refused" 'clean_refusal && [ ! -s "$W/out/totp-prod.stdout" ]'
evil() { # NAME: a copy of the dev directory for an attacker to edit; its path in $E
  E=$W/evil-$1; cp -a "$D1" "$E"
}
bad=""
evil json; printf '{"principals": [' >"$E/dev-credentials.json"
run totp-evil-json "$BIN" totp code alice --data-dir "$E"; clean_refusal || bad="$bad invalid-json:$RC"
evil huge; { printf '{"principals": [{"name": "'; head -c 64000000 /dev/zero | tr '\0' 'x'; } >"$E/dev-credentials.json"
run totp-evil-huge "$BIN" totp code alice --data-dir "$E"; { clean_refusal && [ ${#OUT} -lt 2000 ]; } || bad="$bad huge:$RC"
HUGESECS=$SECS
evil link; ln -sf /etc/shadow "$E/dev-credentials.json"
run totp-evil-link "$BIN" totp code alice --data-dir "$E"; { clean_refusal && ! grep -q "root:" <<<"$OUT"; } || bad="$bad symlink-to-shadow:$RC"
evil dir; rm -f "$E/dev-credentials.json"; mkdir "$E/dev-credentials.json"
run totp-evil-dir "$BIN" totp code alice --data-dir "$E"; clean_refusal || bad="$bad a-directory:$RC"
evil b32; jq '(.principals[] | select(.name == "alice") | .totp_secret) = "not base32 !!!"' "$D1/dev-credentials.json" >"$E/dev-credentials.json"
run totp-evil-b32 "$BIN" totp code alice --data-dir "$E"; { clean_refusal && ! grep -q "not base32" <<<"$OUT"; } || bad="$bad bad-secret:$RC"
evil field; jq '.principals[0].shell = "$(id)"' "$D1/dev-credentials.json" >"$E/dev-credentials.json"
run totp-evil-field "$BIN" totp code alice --data-dir "$E"; clean_refusal || bad="$bad unknown-field:$RC"
evil type; jq '.principals = "alice"' "$D1/dev-credentials.json" >"$E/dev-credentials.json"
run totp-evil-type "$BIN" totp code alice --data-dir "$E"; clean_refusal || bad="$bad wrong-type:$RC"
check "an attacker-edited dev-credentials.json (cut short, 64 MB, a symlink to /etc/shadow, a directory, a bad secret, an unknown field, a wrong type): each refused cleanly, no content echoed${bad}" '[ -z "$bad" ]'
check "...the 64 MB file refused within 5 s ($HUGESECS s)" 'secs_le "$HUGESECS" 5'
note "invalid JSON says: $(head -n1 "$W/out/totp-evil-json" | cut -c1-100); a bad secret: $(head -n1 "$W/out/totp-evil-b32" | cut -c1-100)"
evil path; jq '(.principals[] | select(.name == "alice") | .name) = "../../../etc/passwd"' "$D1/dev-credentials.json" >"$E/dev-credentials.json"
run totp-evil-path "$BIN" totp code "../../../etc/passwd" --data-dir "$E"
check "a demo name that is a path: only a name (a code or a refusal), no file read through it" '! grep -q "root:" <<<"$OUT" && [ $RC -lt 101 ]'
E=$W/evil-bare; mkdir -m 700 "$E"; cp "$CRED" "$E/"
run totp-evil-bare "$BIN" totp code alice --data-dir "$E"
note "a directory holding only a copied dev-credentials.json (no dev key, no database): totp code exit $RC — $( [ $RC = 0 ] && echo 'it prints a code: \"dev data\" means any parseable credentials file (harmless: it can only compute codes for secrets the file already holds)' || first 80)"
E=$W/evil-fifo; mkdir -m 700 "$E"; mkfifo -m 600 "$E/dev-credentials.json"
run totp-evil-fifo timeout 3 "$BIN" totp code alice --data-dir "$E"
note "dev-credentials.json as a FIFO: exit $RC after $SECS s$([ $RC = 124 ] && echo ' (blocks on open, like the key file)')"
# ids in dev-credentials.json, against the dev vault's own database.
run dev-list env DATABASE_URL="sqlite://$D1/strongroom.db" "$BIN" principal list --tenant demo --json
check "dev-credentials.json has an id for each of its $(jq '.principals | length' "$CRED") principals, the ones principal list gives for tenant demo" \
  '[ "$(jq -r ".principals[] | \"\(.name) \(.id)\"" "$CRED" | sort)" = "$(jq -r ".principals[] | \"\(.name) \(.id)\"" "$W/out/dev-list.stdout" | sort)" ] && ! jq -e ".principals[] | select(.id == null)" "$CRED" >/dev/null'
check "dev-credentials.json is mode 0600 ($(mode "$CRED"))" '[ "$(mode "$CRED")" = 600 ]'
# The banner's pasted script, from another directory, with no strongroom on the PATH.
banner_script() { sed -n '/^Try it from a shell/,/Ctrl-C stops it/p' "$1" | sed '1d;$d'; }
banner_script "$W/log/dev1.log" >"$W/setup/banner1.sh"
(cd / && PATH=/usr/bin:/bin bash "$W/setup/banner1.sh") >"$W/out/banner1.out" 2>&1
NPAN=$(grep -o 4111111111111111 "$W/out/banner1.out" | wc -l)
check "the dev banner's script, pasted into bash elsewhere (no strongroom on the PATH): 4111111111111111 from detokenize and from reveal ($NPAN times)" \
  '[ "$NPAN" -ge 2 ] && grep -q "\"status\":\"approved\"" "$W/out/banner1.out"'
[ "$NPAN" -ge 2 ] || note "banner script output: $(tr '\n' ' ' <"$W/out/banner1.out" | cut -c1-300)"
check "its totp lines name this binary by its path and the data directory" 'grep -qF "$BIN totp code --data-dir $D1" "$W/setup/banner1.sh"'
# The same with a data directory whose path has a space in it.
D2="$W/with space/dev2"; mkdir -p -m 700 "$W/with space"
env -u DATABASE_URL -u STRONGROOM_AUDIT_CHECKPOINT_FILE "$BIN" dev --listen "127.0.0.1:$P_DEV2" --data-dir "$D2" >"$W/log/dev2.log" 2>&1 &
DEV2PID=$!; PIDS="$PIDS $DEV2PID"
for _ in $(seq 300); do grep -q 'Ctrl-C stops it' "$W/log/dev2.log" && curl -fs "http://127.0.0.1:$P_DEV2/readyz" >/dev/null && break; sleep 0.1; done
jq -r '.principals[] | .key, (.totp_secret // empty)' "$D2/dev-credentials.json" >>"$W/secrets" 2>/dev/null
banner_script "$W/log/dev2.log" >"$W/setup/banner2.sh"
(cd / && PATH=/usr/bin:/bin bash "$W/setup/banner2.sh") >"$W/out/banner2.out" 2>&1
NPAN2=$(grep -o 4111111111111111 "$W/out/banner2.out" | wc -l)
check "the banner's script for a data directory with a space in its path ('with space/dev2'): still reveals the card ($NPAN2 times)" '[ "$NPAN2" -ge 2 ]'
[ "$NPAN2" -ge 2 ] || note "its totp line: $(grep -m1 -o "[^(]*totp code[^)]*" "$W/setup/banner2.sh"); output: $(grep -v '^{' "$W/out/banner2.out" | head -n2 | tr '\n' ' ' | cut -c1-200)"
stop "$DEV2PID"

# --- 5. Re-tokenize with other metadata ------------------------------------------------------------
echo "== 5. metadata_ignored"
PAN1=$(py pan "$$"); PAN2=$(py pan $(($$ + 1))); PAN3=$(py pan $(($$ + 2))); PAN4=$(py pan $(($$ + 3)))
printf '%s\n%s\n' "$PAN1" "$PAN2" >"$W/pans"
tok t1 "$ATOK" "{\"value\":\"$PAN1\",\"metadata\":{\"customer\":\"c1\",\"order\":7}}"
T1=$(j -r .token)
check "first tokenize with metadata: 201, created true, metadata_ignored false" \
  '[ "$ST" = 201 ] && [ "$(j "[.created, .metadata_ignored]")" = "[true,false]" ]'
tok t2 "$ATOK" "{\"value\":\"$PAN1\",\"metadata\":{\"customer\":\"c2-other-$$\"}}"
check "the same PAN with other metadata: 200, the same token, the stored metadata, metadata_ignored true" \
  '[ "$ST" = 200 ] && [ "$(j -r .token)" = "$T1" ] && [ "$(j "[.created, .metadata_ignored, .metadata.customer]")" = "[false,true,\"c1\"]" ]'
check "...and the metadata sent is not echoed" '! grep -q "c2-other-$$" <<<"$B"'
tok t3 "$ATOK" "{\"value\":\"$PAN1\"}"
check "the same PAN with no metadata: 200, metadata_ignored false" '[ "$ST" = 200 ] && [ "$(j .metadata_ignored)" = false ]'
tok t4 "$ATOK" "{\"value\":\"$PAN1\",\"metadata\":{\"order\":7,\"customer\":\"c1\"}}"
check "the same metadata with its keys in another order: metadata_ignored false (compared as JSON)" '[ "$ST" = 200 ] && [ "$(j .metadata_ignored)" = false ]'
tok t5 "$ATOK" "{\"value\":\"$PAN1\",\"metadata\":null}"
note "metadata: null on a repeat: $ST, metadata_ignored $(j .metadata_ignored)"
tok t6 "$ATOK" "{\"value\":\"$PAN1\",\"metadata\":{\"customer\":\"c1\",\"order\":7.0}}"
note "the same metadata with 7.0 for 7: metadata_ignored $(j .metadata_ignored)"
req get1 GET "/v1/tokens/$T1" -H "$(key "$ATOK")"
check "GET the token: its metadata is still the first call's, and a lookup carries no metadata_ignored" \
  '[ "$ST" = 200 ] && [ "$(j -S .metadata)" = "{\"customer\":\"c1\",\"order\":7}" ] && [ "$(j "has(\"metadata_ignored\")")" = false ]'
check "the stored row's metadata never changed" \
  '[ "$(psql "$DATABASE_URL" -qtAc "select metadata::text from tokens where token = '"'"'$T1'"'"'")" = "{\"order\": 7, \"customer\": \"c1\"}" ]'
tok g1 "$GTOK" "{\"value\":\"$PAN1\",\"metadata\":{\"customer\":\"g1\"}}"
G1=$(j -r .token)
check "the same PAN in another tenant with metadata: 201, its own token, its own metadata, metadata_ignored false" \
  '[ "$ST" = 201 ] && [ "$G1" != "$T1" ] && [ "$(j "[.created, .metadata_ignored, .metadata.customer]")" = "[true,false,\"g1\"]" ]'
check "...not a word of acme's metadata or token (no cross-tenant oracle)" '! grep -qE "c1|$T1" <<<"$B"'
tok g2 "$GTOK" "{\"value\":\"$PAN1\",\"metadata\":{\"customer\":\"g2\"}}"
check "globex again with other metadata: 200, metadata_ignored true, globex's own g1 kept" \
  '[ "$ST" = 200 ] && [ "$(j "[.metadata_ignored, .metadata.customer]")" = "[true,\"g1\"]" ] && [ "$(j -r .token)" = "$G1" ]'
tok t7 "$ATOK" "{\"value\":\"$PAN1\",\"metadata\":{\"customer\":\"g1\"}}"
check "acme sending globex's metadata for the PAN: still told only of its own (ignored true, c1)" '[ "$(j "[.metadata_ignored, .metadata.customer]")" = "[true,\"c1\"]" ]'
# A batch with one new PAN twice, two metadata values.
req batch1 POST /v1/tokens/batch -H "$(key "$ATOK")" "${JSON[@]}" \
  --data-binary "{\"items\":[{\"value\":\"$PAN2\",\"metadata\":{\"m\":\"first\"}},{\"value\":\"$PAN2\",\"metadata\":{\"m\":\"second\"}}]}"
BATCH=$B
BT0=$(j -r '.results[0].token'); BT1=$(j -r '.results[1].token')
R0=$(j '.results[0] | [.created, .metadata.m, .metadata_ignored]'); R1=$(j '.results[1] | [.created, .metadata.m, .metadata_ignored]')
req get2 GET "/v1/tokens/$BT0" -H "$(key "$ATOK")"; STORED=$(j -r .metadata.m)
note "batch [PAN2 {m: first}, PAN2 {m: second}]: $ST; item 0 [created, metadata.m, ignored] = $R0, item 1 = $R1; stored: $STORED"
check "a batch with one new PAN twice: one token for both ($BT0)" '[ -n "$BT0" ] && [ "$BT0" = "$BT1" ]'
B=$BATCH
check "...both answers show the metadata that was stored ($STORED), not each its own" \
  '[ -n "$STORED" ] && [ "$(j -r ".results[0].metadata.m")" = "$STORED" ] && [ "$(j -r ".results[1].metadata.m")" = "$STORED" ]'
# item i sent "first" (0) or "second" (1): it must say ignored exactly when that is not what was stored.
want_ignored() { [ "$STORED" = "$1" ] && echo false || echo true; }
check "...and the item whose metadata was not stored says metadata_ignored true, the other false" \
  '[ "$(j -r ".results[0].metadata_ignored")" = "$(want_ignored first)" ] && [ "$(j -r ".results[1].metadata_ignored")" = "$(want_ignored second)" ]'
check "...exactly one of the two says created true" '[ "$(j "[.results[].created | select(. == true)] | length")" = 1 ]'
# Card data in metadata: the detector comes first, even when the PAN already has a token.
bad=""
for m in "{\"note\":\"$PAN3\"}" "{\"note\":\"card ${PAN3:0:4} ${PAN3:4:4} ${PAN3:8:4} ${PAN3:12:4}\"}" "{\"n\":$PAN3}" \
  "{\"deep\":{\"x\":[\"$PAN3\"]}}" "{\"note\":\"$PAN1\"}" "{\"$PAN3\":1}"; do
  tok "cardmeta-$((++U))" "$ATOK" "{\"value\":\"$PAN1\",\"metadata\":$m}"
  { [ "$ST" = 422 ] && [ "$CODE" = sensitive_data_refused ] && ! grep -qE "$PAN3|$PAN1|${PAN3:8:4} ${PAN3:12:4}" <<<"$B"; } || bad="$bad [$m]:$ST/$CODE"
done
check "a card number in the metadata of a PAN that already has a token (string, spaced, a number, nested, the PAN itself, a key): 422 sensitive_data_refused, not echoed${bad}" '[ -z "$bad" ]'
req cardmeta-batch POST /v1/tokens/batch -H "$(key "$ATOK")" "${JSON[@]}" --data-binary "{\"items\":[{\"value\":\"$PAN1\",\"metadata\":{\"note\":\"$PAN3\"}}]}"
check "...in a batch item too: the item refused 422 sensitive_data_refused, no token given back, not echoed" \
  '[ "$(j -r ".results[0].error.code")" = sensitive_data_refused ] && [ "$(j -r ".results[0].token // empty")" = "" ] && ! grep -q "$PAN3" <<<"$B"'
req get3 GET "/v1/tokens/$T1" -H "$(key "$ATOK")"
check "after all of it the token's metadata is still the first call's" '[ "$(j -S .metadata)" = "{\"customer\":\"c1\",\"order\":7}" ]'
check "no token row anywhere holds a card number in its metadata" \
  '! psql "$DATABASE_URL" -qtAc "select coalesce(metadata::text, '"''"') from tokens" | grep -qE "$PAN3|$PAN1"'

# --- 6. strongroom health -------------------------------------------------------------------------
echo "== 6. health"
cd "$W/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj '/CN=Onboarding test CA' \
  -keyout ca.key -out ca.pem -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=localhost' -keyout server.key -out server.csr 2>/dev/null
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out server.pem \
  -extfile <(printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' 'subjectAltName=DNS:localhost,IP:127.0.0.1') 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj '/CN=Someone else CA' \
  -keyout other.key -out other.pem -addext 'basicConstraints=critical,CA:TRUE' 2>/dev/null
chmod 600 ca.key server.key other.key
echo "not a certificate" >garbage.pem
cd "$ROOT"
start tls "$P_TLS" "${KFE[@]}" -- --policy-file "$W/policies.toml" --tls-cert "$W/tls/server.pem" --tls-key "$W/tls/server.key"
TLSPID=$SP
check "a TLS vault for the health checks starts" 'grep -q "strongroom serving" "$W/log/tls.out"'
H=(health --timeout-ms 1500)
run h-ok "$BIN" "${H[@]}" --url "$URL"
check "health of a serving vault: exit 0, says ok: $(first 80)" '[ $RC = 0 ] && grep -q "200" <<<"$OUT"'
run h-localhost "$BIN" "${H[@]}" --url "http://localhost:$P_MAIN"
check "health --url http://localhost:PORT: exit 0" '[ $RC = 0 ]'
run h-env env STRONGROOM_HEALTH_URL="$URL" "$BIN" health
check "health from STRONGROOM_HEALTH_URL: exit 0" '[ $RC = 0 ]'
run h-tls "$BIN" "${H[@]}" --url "https://localhost:$P_TLS" --cacert "$W/tls/ca.pem"
check "health https://localhost with the right CA: exit 0" '[ $RC = 0 ]'
run h-tls-ip "$BIN" "${H[@]}" --url "https://127.0.0.1:$P_TLS" --cacert "$W/tls/ca.pem"
check "health https://127.0.0.1 (an IP in the certificate): exit 0" '[ $RC = 0 ]'
run h-tls-env env STRONGROOM_HEALTH_URL="https://localhost:$P_TLS" STRONGROOM_HEALTH_CACERT="$W/tls/ca.pem" "$BIN" health
check "health from STRONGROOM_HEALTH_URL and STRONGROOM_HEALTH_CACERT: exit 0" '[ $RC = 0 ]'
run h-nocacert "$BIN" "${H[@]}" --url "https://localhost:$P_TLS"
check "https without --cacert: exit 1, a clear error naming --cacert: $(first 90)" '[ $RC = 1 ] && grep -q -- "--cacert" <<<"$OUT"'
run h-wrongca "$BIN" "${H[@]}" --url "https://localhost:$P_TLS" --cacert "$W/tls/other.pem"
check "the wrong CA: exit 1, a TLS error about the certificate: $(first 110)" '[ $RC = 1 ] && grep -q "TLS" <<<"$OUT" && grep -qi "certificate\|issuer" <<<"$OUT"'
run h-nocafile "$BIN" "${H[@]}" --url "https://localhost:$P_TLS" --cacert "$W/tls/nope.pem"
check "a --cacert file that does not exist: exit 1, names it: $(first 90)" '[ $RC = 1 ] && grep -q "nope.pem" <<<"$OUT"'
run h-garbageca "$BIN" "${H[@]}" --url "https://localhost:$P_TLS" --cacert "$W/tls/garbage.pem"
check "a --cacert file with no certificate in it: exit 1" '[ $RC = 1 ]'
note "--cacert with no certificate says: $(first 120)"
run h-cakey "$BIN" "${H[@]}" --url "https://localhost:$P_TLS" --cacert "$W/tls/server.key"
check "a private key given as --cacert: exit 1, and the key is not printed" '[ $RC = 1 ] && ! grep -q "PRIVATE KEY\|$(sed -n 2p "$W/tls/server.key" | cut -c1-20)" <<<"$OUT"'
run h-http-to-tls "$BIN" health --timeout-ms 1500 --url "http://127.0.0.1:$P_TLS"
check "plain http to the TLS port: exit 1 within the timeout ($SECS s)" '[ $RC = 1 ] && secs_le "$SECS" 2.5'
run h-tls-to-http "$BIN" health --timeout-ms 1500 --url "https://localhost:$P_MAIN" --cacert "$W/tls/ca.pem"
check "https to the plain port: exit 1 within the timeout ($SECS s): $(first 80)" '[ $RC = 1 ] && secs_le "$SECS" 2.5'
run h-dead "$BIN" health --timeout-ms 1500 --url "http://127.0.0.1:$P_DEAD"
check "nothing listening: exit 1 at once ($SECS s): $(first 80)" '[ $RC = 1 ] && secs_le "$SECS" 1'
run h-hole "$BIN" health --timeout-ms 700 --url "http://127.0.0.1:$P_HOLE"
check "a server that accepts TCP and never answers: exit 1 within --timeout-ms 700 ($SECS s): $(first 80)" '[ $RC = 1 ] && secs_le "$SECS" 1.5 && grep -q "within 700 ms" <<<"$OUT"'
run h-hole-tls "$BIN" health --timeout-ms 700 --url "https://localhost:$P_HOLE" --cacert "$W/tls/ca.pem"
check "...the same over https (the handshake never completes): exit 1 within 700 ms ($SECS s)" '[ $RC = 1 ] && secs_le "$SECS" 1.5'
run h-hole-default "$BIN" health --url "http://127.0.0.1:$P_HOLE"
check "...with the default timeout (2000 ms): exit 1 in $SECS s" '[ $RC = 1 ] && secs_le "$SECS" 3'
bg_py http503 http "$P_FAKEHTTP" "$W/setup/http503.ready" 503 0 '{"code":"not_ready"}' || exit 1
run h-503 "$BIN" health --url "http://127.0.0.1:$P_FAKEHTTP"
check "a server answering 503: exit 1, the status named: $(first 80)" '[ $RC = 1 ] && grep -q 503 <<<"$OUT"'
bg_py slow http "$P_SLOW" "$W/setup/slow.ready" 200 1.5 || exit 1
run h-slow-short "$BIN" health --timeout-ms 800 --url "http://127.0.0.1:$P_SLOW"
run h-slow-long "$BIN" health --timeout-ms 4000 --url "http://127.0.0.1:$P_SLOW"
check "a server answering 200 after 1.5 s: exit 1 with --timeout-ms 800, exit 0 with --timeout-ms 4000 (the timeout is what it says)" \
  '[ "$(cat "$W/out/h-slow-short" | grep -c "within 800 ms")" = 1 ] && grep -q "200" "$W/out/h-slow-long"'
bad=""
for a in "--timeout-ms 0" "--timeout-ms 60001" "--timeout-ms -5" "--url ftp://127.0.0.1:$P_MAIN" "--url not-a-url" "--url http://" "--url https://localhost:$P_TLS/../healthz"; do
  run "h-arg-$((++U))" "$BIN" health $a
  { clean_refusal && [ $RC != 0 ]; } || bad="$bad [$a]:$RC"
done
check "health refuses timeouts 0, 60001, -5 and URLs ftp://, not-a-url, http:// (no host), https without --cacert; exit non-zero, no panic${bad}" '[ -z "$bad" ]'
start sealed "$P_SEALED" -- --sealed --policy-file "$W/policies.toml"; RC=$?
SEALPID=$SP
check "a sealed instance starts (no key)" '[ $RC = 0 ] && grep -q "strongroom sealed" "$W/log/sealed.out"'
run h-sealed "$BIN" health --url "http://127.0.0.1:$P_SEALED"
RDY=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_SEALED/readyz")
check "health of a SEALED vault: exit 0 — /healthz is liveness and answers 200 sealed (documented), /readyz $RDY" '[ $RC = 0 ] && [ "$RDY" = 503 ]'
note "health cannot tell a sealed vault from an open one (no --ready); a HEALTHCHECK that restarted a sealed vault would lose the custodians' progress, so 0 is arguably right"
stop "$SEALPID"
run h-stopped "$BIN" health --url "http://127.0.0.1:$P_SEALED"
check "health of that vault once stopped: exit 1 at once ($SECS s)" '[ $RC = 1 ] && secs_le "$SECS" 1'
stop "$TLSPID"
run h-tls-stopped "$BIN" health --url "https://localhost:$P_TLS" --cacert "$W/tls/ca.pem"
check "health of the stopped TLS vault: exit 1 ($SECS s)" '[ $RC = 1 ] && secs_le "$SECS" 2'

# --- 7. Leaks ---------------------------------------------------------------------------------------
echo "== 7. leaks"
cat "$W/passwords" >>"$W/secrets"
check "no output of any command or answer in this run ($(ls "$W/out" | wc -l) files) holds a master key, API key, key hash, TOTP secret or the database password" \
  '! cat "$W"/out/* | grep -qF -f <(S)'
check "no server log ($(cat "$W"/log/*.out "$W"/log/*.err 2>/dev/null | wc -l) lines) holds a master key or the database password" \
  '! cat "$W"/log/main.* "$W"/log/tls.* "$W"/log/sealed.* "$W"/log/pol-* "$W"/log/listen-* 2>/dev/null | grep -qF -e "$KEY" -e "$PW" -e "$PWDEC"'
check "no card number of this run in the vault's log" '! cat "$W"/log/main.* | grep -qF -f "$W/pans"'
check "no panic and no 5xx in the vaults' logs" '! cat "$W"/log/main.* "$W"/log/tls.* "$W"/log/sealed.* | grep -qiE "panicked|stack backtrace|\"status\":5[0-9][0-9]"'
check "the audit trail verifies, checkpoints included" 'env "${KFE[@]}" "$BIN" audit verify >"$W/out/final-verify" 2>&1 </dev/null'
stop "$MAINPID"

finish
