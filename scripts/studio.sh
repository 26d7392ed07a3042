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

# The in-sandbox agent (packages/sandbox-agent/guest, Rust, std only, built offline; quick when built): every
# sandbox runs it as its first process. `npm start` and `npm run bench` need it (require_agent: one line naming
# the fix, then exit); for `npm test` it is fatal in CI, and elsewhere the tests that need it skip with a reason.
build_agent() {
  if bash packages/sandbox-agent/scripts/build-agent.sh; then return 0; fi
  if in_ci; then die "the agent is required in CI and could not be built (see above; needs cargo, gcc, libc6-dev)"; fi
  log "warning: the agent could not be built (see above); the tests that need it will skip with a reason"
}
require_agent() {
  bash packages/sandbox-agent/scripts/build-agent.sh >/dev/null || exit 1
}

# PostgreSQL for the store's tests (the API itself runs on embedded PGlite by default).
prepare_test_postgres() {
  [ -n "${STUDIO_TEST_DATABASE_URL:-}" ] && return 0
  local url
  if url=$(STUDIO_CACHE="$CACHE" bash infra/setup-postgres.sh); then export STUDIO_TEST_DATABASE_URL=$url; return 0; fi
  if in_ci; then die "PostgreSQL is required in CI for the store tests and could not be started (see above)"; fi
  log "warning: PostgreSQL unavailable; the store's PostgreSQL tests will skip with a reason"
}

# Debian's chromium for the web e2e tests (apps/web/e2e, driven by playwright-core). In CI a failure is fatal;
# elsewhere the e2e tests skip with a one-line reason.
ensure_chromium() {
  [ -x /usr/bin/chromium ] && return 0
  log "installing chromium (Debian package) for the web e2e tests"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo="sudo"
  if { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium; } >&2; then
    return 0
  fi
  if in_ci; then die "chromium is required in CI for the web e2e tests and could not be installed (apt-get install chromium)"; fi
  log "warning: chromium unavailable (apt-get install chromium); the web e2e tests will skip with a reason"
}

# `npm start`: the API and the web IDE together. The web server proxies /trpc and /terminal to the API, so
# the API must accept the IDE's origin for cookie-authenticated requests (STUDIO_ORIGINS). Ctrl-C or SIGTERM
# stops both; if either exits, the other is stopped too.
start_studio() {
  local web_host=${STUDIO_WEB_HOST:-127.0.0.1} web_port=${STUDIO_WEB_PORT:-3000}
  local api_host=${STUDIO_HOST:-127.0.0.1} api_port=${STUDIO_PORT:-4000}
  local web_url="http://$web_host:$web_port" api_url="http://$api_host:$api_port"
  export STUDIO_WEB_HOST=$web_host STUDIO_WEB_PORT=$web_port
  export STUDIO_ORIGINS="${STUDIO_ORIGINS:+$STUDIO_ORIGINS,}$web_url"
  export STUDIO_API_URL=${STUDIO_API_URL:-$api_url}
  # Previews are `<port>-<label>.localhost:<preview port>`: another site than the IDE on 127.0.0.1.
  export STUDIO_PREVIEW_ORIGIN=${STUDIO_PREVIEW_ORIGIN:-http://*.localhost:${STUDIO_PREVIEW_PORT:-4001}}
  # Build the IDE first (cached: skipped when apps/web is unchanged) so its output does not bury the API's
  # one-time admin password.
  node_modules/.bin/tsx apps/web/scripts/build.ts || die "building the web IDE failed (see above)"
  local api_pid web_pid
  # The API runs as plain JavaScript: a bundle of its TypeScript (about a second to build), not under tsx, whose
  # loader and esbuild service stayed resident for the life of the process (issue 17, the API's memory).
  node_modules/.bin/tsx apps/api/scripts/build.ts || die "building the API failed (see above)"
  node apps/api/dist/main.mjs &
  api_pid=$!
  stop_all() {
    trap - INT TERM
    kill -TERM "$api_pid" "${web_pid:-}" 2>/dev/null || true
    wait 2>/dev/null || true
  }
  trap 'stop_all; exit 130' INT
  trap 'stop_all; exit 143' TERM
  local tries=0
  until node -e "fetch(process.argv[1]).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))" "$STUDIO_API_URL/healthz"; do
    kill -0 "$api_pid" 2>/dev/null || { wait "$api_pid" || true; die "the API exited during start-up (see above)"; }
    tries=$((tries + 1))
    [ "$tries" -gt 600 ] && { stop_all; die "the API did not answer $STUDIO_API_URL/healthz within 60 s"; }
    sleep 0.1
  done
  node_modules/.bin/tsx apps/web/server.ts &
  web_pid=$!
  tries=0
  until node -e "fetch(process.argv[1]).then(r=>process.exit(r.status<500?0:1),()=>process.exit(1))" "$web_url/login"; do
    kill -0 "$web_pid" 2>/dev/null || { stop_all; die "the web server exited during start-up (see above)"; }
    tries=$((tries + 1))
    [ "$tries" -gt 600 ] && { stop_all; die "the web server did not answer $web_url within 60 s"; }
    sleep 0.1
  done
  log "Claude Studio is ready: open $web_url in your browser (user admin; the first start printed its password above)"
  local code=0
  wait -n "$api_pid" "$web_pid" || code=$?
  stop_all
  exit "$code"
}

# Two TypeScript programs side by side, one per core: every Node-side package at once (each file checked once,
# not again for every package that imports it), and the web app with its DOM and JSX settings.
typecheck() {
  local node_pid web_pid code=0
  node_modules/.bin/tsc -p tsconfig.json & node_pid=$!
  node_modules/.bin/tsc -p apps/web/tsconfig.json & web_pid=$!
  wait "$node_pid" || code=$?
  wait "$web_pid" || code=$?
  [ "$code" = 0 ] || die "typecheck failed (see above)"
}

# The pure `unit` project beside the runtime projects (docker, gvisor, e2e, one file at a time): the runtime
# tests mostly wait on containers and browsers, so the unit tests use the core they leave idle. Runtime
# projects never run beside each other: their timing cases (timeouts, resource limits) stay as they were.
# CI keeps only the end of what is printed, so the runtime projects' failures are printed again last.
run_tests() {
  local unit_log runtime_log unit_pid code=0 unit_code=0
  unit_log=$(mktemp)
  runtime_log=$(mktemp)
  node_modules/.bin/vitest run --project unit >"$unit_log" 2>&1 &
  unit_pid=$!
  node_modules/.bin/vitest run --project docker --project gvisor --project e2e 2>&1 | tee "$runtime_log" || code=$?
  wait "$unit_pid" || unit_code=$?
  log "unit project (ran alongside):"
  cat "$unit_log"
  if [ "$code" != 0 ]; then
    log "runtime projects' failures (again, from the output above):"
    grep -E '(FAIL|×|✗|Error|expected|Test Files|Tests  )' "$runtime_log" | tail -n 120 || true
  fi
  rm -f "$unit_log" "$runtime_log"
  [ "$unit_code" = 0 ] || die "unit tests failed (see above)"
  [ "$code" = 0 ] || die "runtime tests failed (see above)"
}

cmd=${1:-}
case "$cmd" in
  test)
    ensure_node_deps
    prepare_runtimes
    prepare_test_postgres
    ensure_chromium
    build_agent
    log "lint (biome)"; npx biome ci .
    log "typecheck"; typecheck
    log "tests"; run_tests
    ;;
  start)
    ensure_node_deps
    require_agent
    prepare_runtimes
    start_studio
    ;;
  typecheck)
    ensure_node_deps
    typecheck
    ;;
  bench)
    ensure_node_deps
    require_agent
    prepare_runtimes
    prepare_test_postgres # the cluster section's store (STUDIO_TEST_DATABASE_URL); without it, its rows skip
    exec npx tsx bench/run.ts "${@:2}"
    ;;
  *) die "usage: scripts/studio.sh start|test|typecheck|bench" ;;
esac
