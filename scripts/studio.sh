#!/usr/bin/env bash
# The two README commands: `npm start` and `npm test` (and `npm run bench`).
# Works on a fresh Debian 12 clone with Node 20: installs what is missing, then runs.
# Idempotent: every step checks before it acts, so a second run is fast.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE="$ROOT/.cache"
mkdir -p "$CACHE"

log() { printf '\033[1;34m[studio]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[studio] %s\033[0m\n' "$*" >&2; exit 1; }
in_ci() { [ "${CI:-}" = "true" ] || [ "${CI:-}" = "1" ]; }

# Installs npm dependencies when node_modules is missing or the lockfile changed since the last install.
# `npm install`, not `npm ci`: npm 11.19 leaves other platforms' optional packages (Biome's, turbo's
# binaries) out of the lockfile it writes, and its own `npm ci` then refuses that lockfile as out of sync.
ensure_node_deps() {
  local stamp="$CACHE/npm-install.stamp" sum
  sum=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ -d node_modules ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then return; fi
  log "installing npm dependencies"
  npm install --no-audit --no-fund --loglevel=error
  echo "$sum" > "$stamp"
}

# Docker, runsc and the sandbox image (infra/setup-runtimes.sh). In CI a failure is fatal; elsewhere
# the tests that need a runtime skip with a one-line reason.
prepare_runtimes() {
  if STUDIO_CACHE="$CACHE" bash infra/setup-runtimes.sh; then return 0; fi
  if in_ci; then die "the sandbox runtimes are required in CI and could not be prepared (see above)"; fi
  log "warning: sandbox runtimes unavailable (see above): sessions cannot start, and their tests skip with a reason"
}

# PostgreSQL for the store's tests (the API itself runs on embedded PGlite by default).
prepare_test_postgres() {
  [ -n "${STUDIO_TEST_DATABASE_URL:-}" ] && return 0
  local url
  if url=$(STUDIO_CACHE="$CACHE" bash infra/setup-postgres.sh); then export STUDIO_TEST_DATABASE_URL=$url; return 0; fi
  if in_ci; then die "PostgreSQL is required in CI for the store tests and could not be started (see above)"; fi
  log "warning: PostgreSQL unavailable; the store's PostgreSQL tests will skip with a reason"
}

cmd=${1:-}
case "$cmd" in
  test)
    ensure_node_deps
    prepare_runtimes
    prepare_test_postgres
    log "lint (biome)"; npx biome ci .
    log "typecheck"; npx turbo run typecheck --output-logs=errors-only
    log "tests"; npx vitest run
    ;;
  start)
    ensure_node_deps
    prepare_runtimes
    exec npm run start -w @studio/api
    ;;
  bench)
    ensure_node_deps
    prepare_runtimes
    exec npx tsx bench/run.ts "${@:2}"
    ;;
  *) die "usage: scripts/studio.sh start|test|bench" ;;
esac
