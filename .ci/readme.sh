#!/usr/bin/env bash
# CI: the README's production walk-through, as a reader pastes it. Takes every block fenced
# ```sh production in README.md, in order, and runs them all in ONE bash (-euo pipefail, each
# command traced with its README.md line), so that what one block sets reaches the next; in a
# throwaway HOME (the real CARGO_HOME and RUSTUP_HOME kept, so that `cargo install` reuses
# target/release), against a fresh database. Then it checks that the person's reveal gave back
# the card that was tokenized (the README's $REVEALED and $PAN) and that the README stopped the
# server it started.
#
# It drops the README's database `strongroom` and roles `strongroom_owner` and `strongroom_app`
# before and after the run, on the PostgreSQL of STRONGROOM_TEST_DATABASE_URL: run it against a
# throwaway server only. Called by .ci/run after `cargo test`; `bash .ci/readme.sh` runs it alone.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$SECONDS

# shellcheck source=postgres.sh
. .ci/postgres.sh
admin_url=$STRONGROOM_TEST_DATABASE_URL

# The tools the walk-through names as prerequisites (PostgreSQL, curl and openssl are there).
if ! command -v jq >/dev/null 2>&1 || ! command -v oathtool >/dev/null 2>&1; then
  echo "readme: installing jq and oathtool"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq jq oathtool >/dev/null
fi

# The walk-through serves on 127.0.0.1:8443 and waits until that answers: nothing else may.
if (exec 3<>/dev/tcp/127.0.0.1/8443) 2>/dev/null; then
  echo "readme: something already listens on 127.0.0.1:8443, where the walk-through serves" >&2
  exit 1
fi

work=$(mktemp -d)
home=$work/home
pid=
owns_database=
drop_readme_database() {
  psql "$admin_url" -q -v ON_ERROR_STOP=1 <<'SQL'
drop database if exists strongroom with (force);
drop role if exists strongroom_app;
drop role if exists strongroom_owner;
SQL
}
cleanup() {
  local status=$?
  set +e
  # Whatever the walk-through left running (its server) is in the program's process group.
  if [ -n "$pid" ]; then
    kill -TERM -- "-$pid" 2>/dev/null && sleep 1
  fi
  if [ "$status" -ne 0 ] && [ -f "$home/strongroom-vault/serve.log" ]; then
    printf '\nreadme: the last lines of ~/strongroom-vault/serve.log:\n' >&2
    tail -n 40 "$home/strongroom-vault/serve.log" >&2
  fi
  [ -z "$owns_database" ] || drop_readme_database
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The program: README.md with every line outside the marked blocks blank, so that a line of the
# program is the same line of README.md (the trace shows README.md:LINE), and each block's
# opening fence a call that announces the block.
awk '
  /^```sh production[[:space:]]*$/ {
    if (inside) { print "README.md:" NR ": a block opens inside block " n > "/dev/stderr"; bad = 1; exit }
    inside = 1; n++; print "readme_block " n " " NR; next
  }
  inside && /^```[[:space:]]*$/ { inside = 0; print ""; next }
  inside { print; next }
  { print "" }
  END {
    if (bad) exit 1
    if (inside) { print "README.md: block " n " is never closed" > "/dev/stderr"; exit 1 }
    if (n == 0) { print "README.md: no ```sh production block" > "/dev/stderr"; exit 1 }
  }
' README.md >"$work/README.md.sh"
blocks=$(grep -c '^readme_block ' "$work/README.md.sh")

cat >"$work/prelude.sh" <<'SH'
# Announces a block, then traces its commands with their README.md line.
readme_block() {
  { set +x; } 2>/dev/null
  printf '\n=== README block %s (README.md line %s) ===\n' "$1" "$2" >&2
  set -x
}
PS4='+ README.md:${LINENO}: '
# curl as the README calls it, and when a call fails, what the vault answered (a problem with its
# code) on stderr too, since the README mostly hands the answer to jq. Same output otherwise.
curl() {
  { local traced=${-//[^x]/} out status=0; set +x; } 2>/dev/null
  out=$(command curl "$@") || status=$?
  [ "$status" -eq 0 ] || [ -z "$out" ] || printf 'readme: curl failed (exit %s); the answer: %s\n' "$status" "$out" >&2
  [ -z "$out" ] || printf '%s\n' "$out"
  { [ -z "$traced" ] || set -x; return "$status"; } 2>/dev/null
}
SH
cat >"$work/checks.sh" <<'SH'
{ set +x; } 2>/dev/null
printf '\n=== checks ===\n' >&2
if [ "$(command -v strongroom)" != "$HOME/.cargo/bin/strongroom" ]; then
  echo "readme: the walk-through ran $(command -v strongroom), not the binary it installed" >&2
  exit 1
fi
if [ "$REVEALED" != "$PAN" ]; then
  echo "readme: the reveal gave back '$REVEALED', not the card that was tokenized" >&2
  exit 1
fi
echo "readme: the person's reveal gave back the card that was tokenized" >&2
if kill -0 "$SERVE_PID" 2>/dev/null; then
  echo "readme: the server the README started (pid $SERVE_PID) is still running" >&2
  exit 1
fi
SH

# A fresh machine's shell: no database URL, no Strongroom or libpq settings from this one; the
# README's `psql` gets only the password of the admin URL, if it has one (.ci/postgres.sh).
password=$(sed -n 's|^[a-z]*://[^:/@]*:\([^@]*\)@.*|\1|p' <<<"$admin_url")
unset DATABASE_URL
for name in $(compgen -e); do
  case $name in STRONGROOM_* | PG*) unset "$name" ;; esac
done
[ -z "$password" ] || export PGPASSWORD=$password

# A throwaway HOME; cargo and rustup keep their own homes, and `cargo install` installs into the
# throwaway one's .cargo/bin, where the README's PATH line looks.
export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
mkdir -m 700 "$home"
export HOME=$home CARGO_INSTALL_ROOT=$home/.cargo

echo "readme: dropping database strongroom and roles strongroom_owner, strongroom_app if they exist"
owns_database=1
drop_readme_database
echo "readme: running the $blocks \`sh production\` blocks of README.md in one bash, HOME=$HOME"
cd "$repo"
# In a process group of its own (job control), so that cleanup can stop all it started; the
# timeout leaves room for a cold `cargo install`.
set -m
# shellcheck disable=SC2016 # the paths are the inner bash's arguments
timeout 1800 bash -euo pipefail -c '. "$1"; . "$2"; . "$3"' readme \
  "$work/prelude.sh" "$work/README.md.sh" "$work/checks.sh" &
pid=$!
set +m
wait "$pid"
echo "readme: all $blocks blocks passed in $((SECONDS - started)) s"
