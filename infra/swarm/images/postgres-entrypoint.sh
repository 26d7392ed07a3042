#!/bin/bash
# Entrypoint of studio-postgres (infra/swarm/images/build.sh installs it as /usr/local/bin/studio-postgres), run by
# tini as root. On first start (no PG_VERSION in the data directory) it makes a cluster owned by `postgres` with the
# superuser password read from POSTGRES_PASSWORD_FILE (a Swarm secret), password (SCRAM) authentication for every
# TCP client, a database `studio` (POSTGRES_DB), and then, as on every start, runs the server as `postgres` on
# port 5432 of every interface. The password is read only on first start: changing the secret later changes
# nothing (ALTER ROLE postgres PASSWORD ... does).
set -euo pipefail

PGDATA=${PGDATA:-/var/lib/postgresql/data}
DB=${POSTGRES_DB:-studio}
BIN=/usr/lib/postgresql/15/bin

die() {
  printf 'studio-postgres: %s\n' "$*" >&2
  exit 1
}
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }

[[ $DB =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "POSTGRES_DB must be a lower-case SQL name like studio, not '$DB'"

# The data directory is a volume: Docker creates it root-owned; the server refuses any mode but 0700 or 0750.
install -d -m 0700 -o postgres -g postgres "$PGDATA"
chown postgres:postgres "$PGDATA"
chmod 0700 "$PGDATA"
install -d -m 2775 -o postgres -g postgres /var/run/postgresql

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  file=${POSTGRES_PASSWORD_FILE:-}
  [ -n "$file" ] ||
    die "POSTGRES_PASSWORD_FILE is not set: give the superuser password as a secret (docker secret create studio_postgres_password -) and set POSTGRES_PASSWORD_FILE=/run/secrets/studio_postgres_password"
  [ -r "$file" ] || die "cannot read POSTGRES_PASSWORD_FILE=$file: check that the secret is mounted there"
  password=$(cat -- "$file") # without its final newline(s)
  [ ${#password} -ge 12 ] || die "the password in $file is shorter than 12 characters: use openssl rand -base64 32"
  [ -z "$(find "$PGDATA" -mindepth 1 -maxdepth 1 ! -name lost+found -print -quit)" ] ||
    die "$PGDATA holds files but no PG_VERSION (not a PostgreSQL data directory): use an empty volume"
  pwfile=$(mktemp /tmp/pwfile.XXXXXX)
  trap 'rm -f "$pwfile"' EXIT
  printf '%s\n' "$password" >"$pwfile"
  chown postgres "$pwfile"
  printf 'studio-postgres: initialising %s (database %s)\n' "$PGDATA" "$DB" >&2
  as_postgres "$BIN/initdb" --pgdata="$PGDATA" --username=postgres --pwfile="$pwfile" \
    --encoding=UTF8 --locale=C.UTF-8 --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  # Every other container reaches the server over the network: SCRAM passwords only, from anywhere the network
  # lets through (the stack's overlay network is what limits who that is).
  printf '%s\n' 'host all all 0.0.0.0/0 scram-sha-256' 'host all all ::/0 scram-sha-256' >>"$PGDATA/pg_hba.conf"
  # jit = off: the image leaves LLVM out (build.sh), and Studio's short queries never gain from JIT.
  printf '%s\n' "listen_addresses = '*'" 'password_encryption = scram-sha-256' 'jit = off' >>"$PGDATA/postgresql.conf"
  # Single-user mode: no server listens while the database is made.
  echo "CREATE DATABASE $DB;" | as_postgres "$BIN/postgres" --single -D "$PGDATA" -j postgres >/dev/null ||
    die "could not create the database $DB (see the lines above)"
fi

# SIGTERM (docker stop, a Swarm update) asks PostgreSQL for a "smart" shutdown, which waits for every client to
# disconnect: API replicas keep pooled connections, so Docker's SIGKILL would follow and the next start would run
# crash recovery. SIGINT is the fast shutdown (clients cut, a clean checkpoint): forward that instead. docker import
# cannot set STOPSIGNAL, hence this shell staying between tini and the server.
# setpriv itself, not the as_postgres function: a function in the background would run in a subshell, whose pid
# $! would be, and a background subshell ignores SIGINT.
setpriv --reuid=postgres --regid=postgres --init-groups -- "$BIN/postgres" -D "$PGDATA" "$@" &
pid=$!
trap 'kill -INT "$pid" 2>/dev/null' TERM INT
status=0
while :; do
  wait "$pid" && status=0 || status=$?
  kill -0 "$pid" 2>/dev/null || break # gone: $status is its own; otherwise a trapped signal ended the wait
done
exit "$status"
