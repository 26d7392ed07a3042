#!/usr/bin/env bash
# Prepares a bare Debian 12 server to run Claude Studio in production behind Traefik (docs/self-hosting.md):
#   - Debian packages: docker.io, docker-compose, apparmor, e2fsprogs, and runsc 20240729 or newer from
#     bookworm-backports (the suite enabled when missing, as infra/setup-runtimes.sh does);
#   - runsc registered with Docker (runtimes.runsc in /etc/docker/daemon.json, merged, never clobbered);
#   - the AppArmor profiles loaded when the kernel has AppArmor (infra/apparmor/load.sh);
#   - the `studio` service user, the data directory /var/lib/studio (0700, root: the API runs as root);
#   - /etc/studio: studio.env (the API's settings), compose.env, secrets/ (generated once, 0600) and the
#     rendered Traefik configuration (traefik/);
#   - the systemd units studio-api.service and studio-web.service.
# Idempotent: a second run changes nothing and says so. The code must be at /opt/studio (a clone of the
# repository, `npm install` done; not `npm ci`, which npm 11.19 refuses on its own lockfile); Node 20 comes from NodeSource or similar (Debian 12 ships Node 18).
#
# Usage (as root):
#   setup-host.sh --domain studio.example.com --acme-email ops@example.com --dns-provider cloudflare
#   setup-host.sh --domain studio.example.com --tls provided     # certificates in /etc/studio/certs
#   setup-host.sh --check     # one line per item ("ok" or "missing ...: fix"), changes nothing;
#                             # exit 0 when everything is in place, 1 when something is missing
#   setup-host.sh --render DIR --domain ... [--tls ...]   # only render the Traefik configuration into DIR
# Options: --preview-domain D (required with --domain: a registrable domain of its own, e.g. studio-preview.net
# beside studio.example.com; see docs/security.md), --backends docker|gvisor|docker,gvisor
# (default docker,gvisor: STUDIO_BACKENDS for the API), --no-packages (packages are managed elsewhere).
# Under STUDIO_ROOT (tests only) useradd, chown and service reloads are left out.
# Environment: STUDIO_ROOT prefixes every host path written or read (tests point it at a temporary
# directory); STUDIO_CODE_DIR is where the code lives (default /opt/studio).
# Exit codes: 0 done (or, with --check, all present); 1 something missing or failed; 2 bad usage.
set -euo pipefail

INFRA=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${STUDIO_ROOT:-}
CODE_DIR=${STUDIO_CODE_DIR:-/opt/studio}
ETC=$ROOT/etc/studio
DATA=$ROOT/var/lib/studio
UNITS=$ROOT/etc/systemd/system
DAEMON_JSON=$ROOT/etc/docker/daemon.json
PACKAGES=(docker.io docker-compose apparmor e2fsprogs)
# runsc comes from bookworm-backports (Debian 12's own is too old for the gVisor backend): _studio_runsc and
# STUDIO_RUNSC_MIN of setup-runtimes.sh, which sourcing only defines (it acts only when executed).
# shellcheck source=SCRIPTDIR/../setup-runtimes.sh
source "$INFRA/setup-runtimes.sh"
SECRETS=(jwt_secret admin_password postgres_password database_url)
# uid of the postgres user in the official postgres image: it reads its password file after dropping root.
POSTGRES_UID=999

mode=install domain='' preview_domain='' tls=acme acme_email='' dns_provider='' render_dir=''
backends=docker,gvisor packages=yes

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case $1 in
  --check) mode=check ;;
  --no-packages) packages=no ;;
  --render)
    mode=render
    render_dir=${2:?--render needs a directory}
    shift
    ;;
  --domain)
    domain=${2:?--domain needs a host name}
    shift
    ;;
  --preview-domain)
    preview_domain=${2:?--preview-domain needs a host name}
    shift
    ;;
  --tls)
    tls=${2:?--tls needs acme or provided}
    shift
    ;;
  --acme-email)
    acme_email=${2:?--acme-email needs an address}
    shift
    ;;
  --dns-provider)
    dns_provider=${2:?--dns-provider needs a lego provider code}
    shift
    ;;
  --backends)
    backends=${2:?--backends needs docker, gvisor or both}
    shift
    ;;
  -h | --help) usage ;;
  *)
    echo "unknown option: $1" >&2
    usage
    ;;
  esac
  shift
done

log() { printf '[setup-host] %s\n' "$*"; }
die() {
  printf '[setup-host] error: %s\n' "$*" >&2
  exit 1
}

# --- rendering the Traefik configuration -------------------------------------------------------------

# Previews are user content: pages a sandbox wrote. On the IDE's site (a subdomain of its domain, or the same
# registrable domain) the browser would send them the IDE's cookies and let them set cookies the IDE reads, so
# they get a registrable domain of their own, as githubusercontent.com is to github.com. The API refuses a
# same-site STUDIO_PREVIEW_DOMAIN at start-up; this says so before anything is written.
check_preview_site() {
  local tsx=$INFRA/../node_modules/.bin/tsx why
  if [ -x "$tsx" ]; then
    why=$("$tsx" "$INFRA/host/check-preview-site.ts" "$preview_domain" "$domain" 2>&1) ||
      die "--preview-domain: $why"
    return 0
  fi
  # Without the code's dependencies: the same rule for the common case (last two labels), stricter elsewhere.
  local a='' b=''
  [[ $preview_domain =~ ([^.]+\.[^.]+)$ ]] && a=${BASH_REMATCH[1]}
  [[ $domain =~ ([^.]+\.[^.]+)$ ]] && b=${BASH_REMATCH[1]}
  if [ "$preview_domain" = "$domain" ] || [[ $preview_domain == *".$domain" ]] || [[ $domain == *".$preview_domain" ]] ||
    [ "$a" = "$b" ]; then
    die "--preview-domain $preview_domain shares a site with $domain: previews need a registrable domain of their own (e.g. studio-preview.net), see docs/security.md"
  fi
}

validate_render_args() {
  [[ $domain =~ ^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$ ]] ||
    die "--domain must be a lower-case DNS name such as studio.example.com (got '${domain}')"
  [ -n "$preview_domain" ] ||
    die "--preview-domain is required: previews need a registrable domain of their own (e.g. studio-preview.net beside $domain), because on the IDE's domain preview pages could use and overwrite its cookies (see docs/security.md)"
  [[ $preview_domain =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$ ]] ||
    die "--preview-domain must be a lower-case DNS name (got '$preview_domain')"
  check_preview_site
  case $tls in
  acme)
    [[ $acme_email == *@* ]] || die "--tls acme needs --acme-email (Let's Encrypt expiry notices)"
    [[ $dns_provider =~ ^[a-z0-9.-]+$ ]] ||
      die "--tls acme needs --dns-provider: the preview wildcard *.$preview_domain can only be issued through a DNS-01 challenge (codes: https://go-acme.github.io/lego/dns/), or use --tls provided"
    ;;
  provided) ;;
  *) die "--tls must be acme or provided (got '$tls')" ;;
  esac
}

# Renders one template: substitutes the placeholders and keeps or drops the "BEGIN acme"/"END acme" blocks.
render_file() {
  local src=$1 dst=$2 re
  # Regex for Traefik's HostRegexp, written inside a double-quoted YAML string: "\\." is a literal dot.
  re=${preview_domain//./'\\.'}
  re=${re//\\/\\\\}
  local args=()
  [ "$tls" = acme ] || args+=(-e '/# BEGIN acme/,/# END acme/d')
  sed "${args[@]}" \
    -e "s|@DOMAIN@|$domain|g" \
    -e "s|@PREVIEW_DOMAIN_RE@|$re|g" \
    -e "s|@PREVIEW_DOMAIN@|$preview_domain|g" \
    -e "s|@ACME_EMAIL@|$acme_email|g" \
    -e "s|@DNS_PROVIDER@|$dns_provider|g" \
    "$src" >"$dst.tmp"
  if [ -f "$dst" ] && cmp -s "$dst.tmp" "$dst"; then
    rm -f "$dst.tmp"
    return 1
  fi
  mv "$dst.tmp" "$dst"
}

render_traefik() {
  local dir=$1 changed=0
  install -d -m 0755 "$dir" "$dir/dynamic"
  render_file "$INFRA/traefik/traefik.yml.in" "$dir/traefik.yml" && changed=1
  render_file "$INFRA/traefik/dynamic/studio.yml.in" "$dir/dynamic/studio.yml" && changed=1
  if [ "$tls" = provided ]; then
    render_file "$INFRA/traefik/dynamic/certificates.yml.in" "$dir/dynamic/certificates.yml" && changed=1
  else
    [ ! -e "$dir/dynamic/certificates.yml" ] || {
      rm -f "$dir/dynamic/certificates.yml"
      changed=1
    }
  fi
  [ -e "$dir/dns.env" ] || {
    install -m 0600 /dev/null "$dir/dns.env"
    changed=1
  }
  if [ "$changed" = 1 ]; then log "Traefik configuration written to $dir"; else log "Traefik configuration up to date"; fi
}

if [ "$mode" = render ]; then
  validate_render_args
  render_traefik "$render_dir"
  exit 0
fi

# --- checks: each prints one line and returns 0 (present) or 1 (missing) ---------------------------------

missing_any=0
ok() { printf 'ok      %s\n' "$1"; }
miss() {
  printf 'missing %s: %s\n' "$1" "$2"
  missing_any=1
}

pkg_installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]; }
has_apparmor() { [ -d "$ROOT/sys/kernel/security/apparmor" ]; }
user_exists() {
  if [ -z "$ROOT" ]; then getent passwd studio >/dev/null 2>&1; else grep -q '^studio:' "$ROOT/etc/passwd" 2>/dev/null; fi
}
has_systemd() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }

check_all() {
  local p s u
  for p in "${PACKAGES[@]}"; do
    if pkg_installed "$p"; then ok "package $p"; else miss "package $p" "apt-get install -y $p"; fi
  done
  local runsc_version
  runsc_version=$(dpkg-query -W -f='${Version}' runsc 2>/dev/null || true)
  if [ -n "$runsc_version" ] && dpkg --compare-versions "$runsc_version" ge "$STUDIO_RUNSC_MIN"; then
    ok "package runsc $runsc_version"
  else
    miss "package runsc >= $STUDIO_RUNSC_MIN (found: ${runsc_version:-none})" \
      "bash $INFRA/setup-runtimes.sh (enables bookworm-backports and installs runsc from it)"
  fi
  if node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2>/dev/null; then
    ok "node >= 20 ($(node --version))"
  else
    miss "node >= 20" "install Node 20 (https://github.com/nodesource/distributions); Debian 12 ships 18"
  fi
  if [ -f "$CODE_DIR/apps/api/src/main.ts" ] && [ -d "$CODE_DIR/node_modules" ]; then
    ok "code in $CODE_DIR"
  else
    miss "code in $CODE_DIR" "git clone the repository to $CODE_DIR, then: cd $CODE_DIR && npm install"
  fi
  if node "$INFRA/host/merge-daemon-json.mjs" --check "$DAEMON_JSON" >/dev/null 2>&1; then
    ok "docker runtime runsc in $DAEMON_JSON"
  else
    miss "docker runtime runsc in $DAEMON_JSON" "run setup-host.sh (merges runtimes.runsc, keeps the rest)"
  fi
  if ! has_apparmor; then
    ok "apparmor profiles (kernel has no AppArmor: nothing to load)"
  else
    for p in studio-sandbox studio-api; do
      if grep -q "^$p " "$ROOT/sys/kernel/security/apparmor/profiles" 2>/dev/null; then
        ok "apparmor profile $p loaded"
      else
        miss "apparmor profile $p loaded" "bash $INFRA/apparmor/load.sh"
      fi
    done
  fi
  if user_exists; then
    ok "service user studio"
  else
    miss "service user studio" "useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin studio"
  fi
  if [ -d "$DATA" ] && [ "$(stat -c %a "$DATA")" = 700 ]; then
    ok "data directory $DATA (0700)"
  else
    miss "data directory $DATA (0700)" "install -d -m 0700 $DATA"
  fi
  for s in "${SECRETS[@]}"; do
    if [ -s "$ETC/secrets/$s" ]; then ok "secret $ETC/secrets/$s"; else miss "secret $ETC/secrets/$s" "run setup-host.sh (generates it once)"; fi
  done
  for s in studio.env compose.env traefik/traefik.yml traefik/dynamic/studio.yml; do
    if [ -s "$ETC/$s" ]; then ok "config $ETC/$s"; else miss "config $ETC/$s" "run setup-host.sh --domain ..."; fi
  done
  for u in studio-api.service studio-web.service; do
    if [ -f "$UNITS/$u" ] && cmp -s "$INFRA/systemd/$u" "$UNITS/$u"; then
      ok "systemd unit $u"
    else
      miss "systemd unit $u" "run setup-host.sh (installs $INFRA/systemd/$u)"
    fi
  done
}

if [ "$mode" = check ]; then
  check_all
  exit "$missing_any"
fi

# --- install --------------------------------------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "run as root (sudo bash $0 ...); --check works without root"

install_packages() {
  local todo=() p
  for p in "${PACKAGES[@]}"; do pkg_installed "$p" || todo+=("$p"); done
  if [ ${#todo[@]} -eq 0 ]; then
    log "Debian packages present"
  else
    log "installing ${todo[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${todo[@]}"
  fi
  # runsc from bookworm-backports (enabling the suite when missing), replacing bookworm's older one.
  CACHE=$(mktemp -d)
  _studio_runsc || die "runsc $STUDIO_RUNSC_MIN or newer could not be installed from bookworm-backports (see above)"
  rm -rf "$CACHE"
}

register_runsc() {
  install -d -m 0755 "$(dirname "$DAEMON_JSON")"
  local result
  result=$(node "$INFRA/host/merge-daemon-json.mjs" "$DAEMON_JSON") ||
    die "could not merge runtimes.runsc into $DAEMON_JSON (see above)"
  if [ "$result" = changed ]; then
    log "registered runsc in $DAEMON_JSON"
    # dockerd re-reads its runtimes on SIGHUP; no restart, so running sandboxes are untouched.
    if has_systemd; then
      systemctl reload docker 2>/dev/null || systemctl restart docker
    elif [ -z "$ROOT" ] && pid=$(pidof dockerd); then
      kill -HUP "$pid"
    fi
  else
    log "runsc already registered with Docker"
  fi
}

# 48 random bytes, base64 without the characters a URL or a shell would mangle: about 60 characters.
random_secret() { head -c 48 /dev/urandom | base64 -w0 | tr -d '/+='; }

write_secrets() {
  install -d -m 0755 "$ETC"
  install -d -m 0700 "$ETC/secrets"
  local s created=0
  for s in jwt_secret admin_password postgres_password; do
    [ -s "$ETC/secrets/$s" ] && continue
    (
      umask 077
      random_secret >"$ETC/secrets/$s"
    )
    created=1
  done
  if [ ! -s "$ETC/secrets/database_url" ]; then
    (
      umask 077
      printf 'postgresql://studio:%s@127.0.0.1:5432/studio\n' "$(cat "$ETC/secrets/postgres_password")" >"$ETC/secrets/database_url"
    )
    created=1
  fi
  # The postgres image reads POSTGRES_PASSWORD_FILE after dropping to its own user; compose bind-mounts
  # the file with these host permissions.
  [ -n "$ROOT" ] || chown "$POSTGRES_UID:$POSTGRES_UID" "$ETC/secrets/postgres_password"
  chmod 0400 "$ETC/secrets/postgres_password"
  if [ "$created" = 1 ]; then
    log "secrets generated in $ETC/secrets (admin password: $ETC/secrets/admin_password)"
  else
    log "secrets present"
  fi
}

write_config() {
  local env=$ETC/studio.env
  if [ ! -s "$env" ]; then
    validate_render_args
    cat >"$env" <<EOF
# Settings of the Studio API (apps/api/src/env.ts), read by studio-api.service. Secrets are not here:
# they are in /etc/studio/secrets and reach the API as *_FILE variables (infra/bin/studio-run.sh).
STUDIO_HOST=127.0.0.1
STUDIO_PORT=4000
STUDIO_PREVIEW_PORT=4001
STUDIO_PREVIEW_DOMAIN=$preview_domain
STUDIO_DATA_DIR=/var/lib/studio
STUDIO_BACKENDS=$backends
STUDIO_ORIGINS=https://$domain
STUDIO_TRUST_PROXY=true
# Prometheus metrics on loopback only (never routed by Traefik).
STUDIO_METRICS_HOST=127.0.0.1
STUDIO_METRICS_PORT=9464
STUDIO_LOG_LEVEL=info
EOF
    chmod 0644 "$env"
    log "wrote $env"
  fi
  if [ ! -s "$ETC/web.env" ]; then
    validate_render_args
    # The IDE frames previews from their own hosts: its CSP's frame-src (apps/web/src/env.ts).
    printf '# Settings of the web IDE (apps/web/src/env.ts), read by studio-web.service.\nSTUDIO_PREVIEW_ORIGIN=https://*.%s\n' \
      "$preview_domain" >"$ETC/web.env"
    chmod 0644 "$ETC/web.env"
    log "wrote $ETC/web.env"
  fi
  if [ ! -s "$ETC/compose.env" ]; then
    printf 'STUDIO_ETC=/etc/studio\nSTUDIO_DATA_DIR=/var/lib/studio\n' >"$ETC/compose.env"
    log "wrote $ETC/compose.env"
  fi
  if [ -n "$domain" ]; then
    validate_render_args
    render_traefik "$ETC/traefik"
  elif [ ! -s "$ETC/traefik/traefik.yml" ]; then
    die "first run: pass --domain (and --acme-email and --dns-provider, or --tls provided)"
  else
    log "Traefik configuration kept (pass --domain to re-render it)"
  fi
  install -d -m 0755 "$ETC/certs"
}

create_user_and_dirs() {
  if user_exists; then
    log "service user studio present"
  elif [ -n "$ROOT" ]; then
    mkdir -p "$ROOT/etc"
    echo 'studio:x:999:999::/nonexistent:/usr/sbin/nologin' >>"$ROOT/etc/passwd"
    log "created service user studio (in $ROOT/etc/passwd)"
  else
    useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin studio
    log "created service user studio"
  fi
  install -d -m 0700 "$DATA"
}

install_units() {
  local u changed=0
  install -d -m 0755 "$UNITS"
  for u in studio-api.service studio-web.service; do
    if ! cmp -s "$INFRA/systemd/$u" "$UNITS/$u"; then
      install -m 0644 "$INFRA/systemd/$u" "$UNITS/$u"
      changed=1
    fi
  done
  if [ "$changed" = 0 ]; then
    log "systemd units up to date"
  elif has_systemd; then
    systemctl daemon-reload
    systemctl enable studio-api.service studio-web.service >/dev/null
    log "installed and enabled studio-api.service and studio-web.service (start them: systemctl start studio-api studio-web)"
  else
    log "installed the systemd units in $UNITS (no systemd running: enable them on the target host)"
  fi
}

if [ "$packages" = yes ]; then install_packages; else log "Debian packages: skipped (--no-packages)"; fi
register_runsc
if has_apparmor; then bash "$INFRA/apparmor/load.sh"; else log "kernel has no AppArmor: profiles not loaded"; fi
create_user_and_dirs
write_secrets
write_config
install_units
log "done; check with: bash $0 --check"
