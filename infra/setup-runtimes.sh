#!/usr/bin/env bash
# Prepares the sandbox runtimes on a Debian 12 host for `npm start`, `npm test` and CI:
#   1. installs the Debian packages that are missing (docker.io e2fsprogs apparmor mmdebstrap), and runsc from
#      bookworm-backports (enabling that suite when missing; replaces an older runsc such as bookworm's 20221219);
#   2. starts dockerd in the background when it does not answer (no systemd on these machines);
#   3. checks that the AppArmor profile compiles (infra/apparmor/check.sh);
#   4. builds the sandbox image and rootfs if their recipe changed (infra/image/build.sh).
# runsc is not registered with Docker: the gVisor backend drives runsc directly.
#
# Run it (bash infra/setup-runtimes.sh: exit 0 when ready, 1 with the fix named otherwise), or source it and
# call studio_setup_runtimes (returns instead of exiting). Idempotent; about 0.1 s when all is in place.
# Uses sudo when not root; with neither, prints the commands to run as root and fails.

STUDIO_INFRA=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STUDIO_PACKAGES=(docker.io e2fsprogs apparmor mmdebstrap)
# The gVisor backend needs runsc 20240729 or newer (systrap, directfs, OCI seccomp, the statx fix); Debian 12
# carries it in bookworm-backports only. Keep in step with MIN_RUNSC_VERSION in packages/isolation-gvisor/src/runsc.ts.
STUDIO_RUNSC_MIN=0.0~20240729
STUDIO_BACKPORTS_LIST=/etc/apt/sources.list.d/bookworm-backports.list

_studio_log() { printf '[studio] %s\n' "$*" >&2; }
_studio_fail() {
  printf '[studio] error: %s\n' "$*" >&2
  return 1
}

# Runs a command as root: directly, or with sudo (never prompting when there is no terminal to prompt on).
_studio_as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    if [ -t 0 ]; then sudo "$@"; else sudo -n "$@"; fi
  else
    return 1
  fi
}
_studio_can_root() { [ "$(id -u)" = 0 ] || command -v sudo >/dev/null; }

_studio_packages() {
  local missing=() p status
  for p in "${STUDIO_PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  if ! _studio_can_root; then
    _studio_fail "missing Debian packages: ${missing[*]}. Run as root, then retry:
    apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
    return 1
  fi
  _studio_log "installing Debian packages: ${missing[*]}"
  local log=$CACHE/apt.log
  if ! {
    _studio_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$log" 2>&1 &&
      _studio_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1
  }; then
    tail -20 "$log" >&2
    _studio_fail "apt-get could not install ${missing[*]} (log: $log): check the Debian mirror, or run as root:
    apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
    return 1
  fi
}

# The mirror of the machine's main Debian suite (deb822 or one-line sources), so backports come from the same place.
_studio_debian_mirror() {
  local uri
  uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '$2 ~ /debian\/?$/ { print $2; exit }')
  [ -n "$uri" ] || uri=$(grep -hsE '^deb +(\[[^]]*\] +)?[a-z]+://[^ ]*debian/? +bookworm ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    sed -E 's/^deb +(\[[^]]*\] +)?//' | awk '{ print $1; exit }')
  echo "${uri:-http://deb.debian.org/debian}"
}

# runsc from bookworm-backports, replacing an older one (bookworm's own runsc is 0.0~20221219).
_studio_runsc() {
  local have
  have=$(dpkg-query -W -f='${Version}' runsc 2>/dev/null || true)
  if [ -n "$have" ] && dpkg --compare-versions "$have" ge "$STUDIO_RUNSC_MIN"; then return 0; fi
  local line
  line="deb $(_studio_debian_mirror) bookworm-backports main"
  if ! _studio_can_root; then
    _studio_fail "runsc ${have:-is missing}${have:+ is too old}: gVisor needs $STUDIO_RUNSC_MIN or newer. Run as root, then retry:
    echo '$line' > $STUDIO_BACKPORTS_LIST
    apt-get update && apt-get install -y --no-install-recommends -t bookworm-backports runsc"
    return 1
  fi
  local log=$CACHE/apt.log
  if ! grep -qsE '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; then
    _studio_log "enabling bookworm-backports ($line)"
    _studio_as_root sh -c "echo '$line' > $STUDIO_BACKPORTS_LIST" || {
      _studio_fail "could not write $STUDIO_BACKPORTS_LIST (need root or sudo)"
      return 1
    }
  fi
  _studio_log "installing runsc from bookworm-backports${have:+ (replacing $have)}"
  if ! {
    _studio_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$log" 2>&1 &&
      _studio_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends -t bookworm-backports runsc >>"$log" 2>&1
  }; then
    tail -20 "$log" >&2
    _studio_fail "apt-get could not install runsc from bookworm-backports (log: $log): check the Debian mirror, or run as root:
    apt-get update && apt-get install -y --no-install-recommends -t bookworm-backports runsc"
    return 1
  fi
  have=$(dpkg-query -W -f='${Version}' runsc 2>/dev/null || true)
  dpkg --compare-versions "${have:-0}" ge "$STUDIO_RUNSC_MIN" || {
    _studio_fail "bookworm-backports gave runsc ${have:-nothing}, older than $STUDIO_RUNSC_MIN: check $STUDIO_BACKPORTS_LIST"
    return 1
  }
}

_studio_docker() {
  local err
  err=$(docker info 2>&1 >/dev/null) && return 0
  if [[ $err == *"permission denied"* ]]; then
    _studio_fail "the Docker daemon runs but $(id -un) may not use it: sudo usermod -aG docker $(id -un), then log in again"
    return 1
  fi
  command -v dockerd >/dev/null || PATH=$PATH:/usr/sbin:/sbin
  command -v dockerd >/dev/null || {
    _studio_fail "dockerd not found: apt-get install docker.io"
    return 1
  }
  local log=$CACHE/dockerd.log
  if ! _studio_can_root; then
    _studio_fail "the Docker daemon is not running. Run as root, then retry:
    nohup dockerd >$log 2>&1 &"
    return 1
  fi
  _studio_log "starting dockerd (log: $log)"
  _studio_as_root sh -c "nohup dockerd >'$log' 2>&1 </dev/null &" || {
    _studio_fail "could not start dockerd (need root or sudo)"
    return 1
  }
  local i
  for i in $(seq 1 60); do
    docker info >/dev/null 2>&1 && {
      _studio_log "dockerd is up ($((i / 2)) s)"
      return 0
    }
    sleep 0.5
  done
  tail -20 "$log" >&2
  _studio_fail "dockerd did not answer within 30 s (log: $log): fix the error above, or start it by hand: nohup dockerd &"
}

# gVisor's ptrace platform costs host threads per guest process (about 110 for an idle sandbox, thousands
# under a fork bomb), so the kernel's default pid_max of 32768 is too small for several busy sandboxes.
_studio_pid_max() {
  local want=4194304 have
  have=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 0)
  [ "$have" -ge "$want" ] && return 0
  _studio_as_root sh -c "echo $want > /proc/sys/kernel/pid_max" 2>/dev/null ||
    _studio_log "warning: kernel.pid_max is $have; raise it (sysctl -w kernel.pid_max=$want) for busy gVisor sandboxes"
}

studio_setup_runtimes() {
  local CACHE=${STUDIO_CACHE:-$(cd "$STUDIO_INFRA/.." && pwd)/.cache}
  mkdir -p "$CACHE" || {
    _studio_fail "cannot create the cache directory $CACHE (set STUDIO_CACHE to a writable place)"
    return 1
  }
  _studio_packages || return 1
  _studio_runsc || return 1
  _studio_docker || return 1
  command -v runsc >/dev/null || PATH=$PATH:/usr/sbin
  command -v runsc >/dev/null || {
    _studio_fail "runsc not found: apt-get install -t bookworm-backports runsc"
    return 1
  }
  _studio_pid_max
  bash "$STUDIO_INFRA/apparmor/check.sh" >/dev/null || {
    _studio_fail "the AppArmor profile infra/apparmor/studio-sandbox does not compile: fix it (see above)"
    return 1
  }
  STUDIO_CACHE=$CACHE bash "$STUDIO_INFRA/image/build.sh" || {
    _studio_fail "the sandbox image could not be built: see the lines above (infra/image/build.sh)"
    return 1
  }
  _studio_log "runtimes ready: docker $(docker version --format '{{.Server.Version}}' 2>/dev/null), $(runsc --version 2>/dev/null | head -1)"
}

# Executed rather than sourced: do it, and exit with the result.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  studio_setup_runtimes
fi
