#!/usr/bin/env bash
# A private PostgreSQL server on 127.0.0.1 for the store's tests (the API itself defaults to embedded
# PGlite). Installs Debian's postgresql when missing, keeps its cluster outside the clone (as root: under the
# postgres user's home, which that user can reach even when a parent of the clone is mode 0700, as /root and
# every mktemp -d are; otherwise under $STUDIO_CACHE/postgres), and prints the URL the tests read as
# STUDIO_TEST_DATABASE_URL on stdout. Idempotent: a running server is reused. STUDIO_TEST_PG_DIR overrides.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${STUDIO_CACHE:-$ROOT/.cache}
PORT=${STUDIO_TEST_PG_PORT:-54329}
if [ -n "${STUDIO_TEST_PG_DIR:-}" ]; then
  PGDIR=$STUDIO_TEST_PG_DIR
elif [ "$(id -u)" = 0 ]; then
  PGDIR=/var/lib/postgresql/studio-test-$PORT
else
  PGDIR=$CACHE/postgres
fi
DATA=$PGDIR/data
# Unix socket paths may not exceed 108 bytes: keep the socket out of a possibly deep clone.
SOCK=${XDG_RUNTIME_DIR:-/tmp}/studio-pg-$(id -u)-$PORT
[ "$(id -u)" != 0 ] || SOCK=$PGDIR/sock
LOG=$PGDIR/server.log
log() { printf '[studio] %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

if ! dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q 'install ok installed'; then
  log "installing Debian package: postgresql"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2 \
    || { log "error: apt-get install postgresql failed: run it by hand as root"; exit 1; }
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$BIN/pg_ctl" ] || { log "error: PostgreSQL binaries not found under /usr/lib/postgresql: apt-get install postgresql"; exit 1; }

# The server refuses to run as root: run it as the postgres user Debian's package creates.
# From /: the postgres user may not be able to enter the current folder (a clone under a 0700 parent).
as_pg() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }
mkdir -p "$SOCK"
if [ "$(id -u)" = 0 ]; then
  chown -R postgres:postgres "$PGDIR"
  # Fail here with the reason rather than in initdb with "Permission denied".
  runuser -u postgres -- test -x "$PGDIR" ||
    { log "error: the postgres user cannot reach $PGDIR (a parent folder is not traversable): set STUDIO_TEST_PG_DIR to a folder it can reach"; exit 1; }
fi

# A server already answering on the port (another checkout's, say) is reused rather than fought over.
if as_pg "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  : # reuse it
elif [ ! -f "$DATA/PG_VERSION" ]; then
  log "creating a test PostgreSQL cluster in $DATA"
  as_pg "$BIN/initdb" -D "$DATA" -U postgres -A trust --no-sync -E UTF8 >/dev/null
fi
if ! as_pg "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  log "starting PostgreSQL on 127.0.0.1:$PORT"
  as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 30 \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $SOCK -c fsync=off -c max_connections=200" start >/dev/null \
    || { tail -20 "$LOG" >&2; log "error: PostgreSQL did not start (log: $LOG)"; exit 1; }
fi
if ! as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='studio_test'" | grep -q 1; then
  as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres studio_test
fi
echo "postgres://postgres@127.0.0.1:$PORT/studio_test"
