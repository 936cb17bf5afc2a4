# Sourced by .ci/run and bench/run.sh: make PostgreSQL answer on 127.0.0.1:5432 (install it if
# it is missing, start it if it is not running) and export STRONGROOM_TEST_DATABASE_URL, an
# admin URL on it.

export STRONGROOM_TEST_DATABASE_URL="${STRONGROOM_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

answers() { psql "$STRONGROOM_TEST_DATABASE_URL" -qtAc 'select 1' >/dev/null 2>&1; }
listening() { pg_isready -h 127.0.0.1 -p 5432 -q >/dev/null 2>&1; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "postgres: installing PostgreSQL"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql postgresql-client >/dev/null
fi

if ! listening; then
  version=$(ls /etc/postgresql | sort -n | tail -n 1)
  echo "postgres: starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do listening && break; sleep 1; done
fi
listening || { echo "postgres: PostgreSQL does not answer on 127.0.0.1:5432" >&2; exit 1; }

if ! answers; then
  # A fresh Debian install asks for a password over TCP: give the postgres role one.
  echo "postgres: setting a password for the postgres role"
  su postgres -c "psql -qc \"alter role postgres password 'postgres'\"" >/dev/null
  export STRONGROOM_TEST_DATABASE_URL="postgres://postgres:postgres@127.0.0.1:5432/postgres"
  answers || { echo "postgres: cannot connect to PostgreSQL as postgres" >&2; exit 1; }
fi
