#!/usr/bin/env bash
# Loads Studio's AppArmor profiles (studio-sandbox for Docker sandboxes, studio-api for the API process)
# into the kernel and installs them in /etc/apparmor.d so they survive a reboot. Needs root.
# On a kernel without AppArmor it loads nothing, says so and exits 0: the Docker backend then reports that
# sandboxes run without AppArmor, and the API unit's AppArmorProfile=-studio-api is ignored.
#   load.sh                compile, install and load (replacing loaded versions)
#   load.sh --enforce-api  the same, with studio-api enforcing instead of complaining
#   load.sh --check        exit 0 when both are loaded, 1 otherwise; changes nothing
# studio-sandbox always enforces. studio-api is loaded in complain mode by default (denials are logged, not
# enforced): its rules are derived from what the API does, not yet from a run on an AppArmor kernel, and a
# wrong denial there stops every session. Watch `journalctl -k | grep studio-api`, then use --enforce-api.
# STUDIO_ROOT prefixes every host path (tests point it at a temporary directory).
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root=${STUDIO_ROOT:-}
profiles=(studio-sandbox studio-api)

if [ ! -d "$root/sys/kernel/security/apparmor" ]; then
  echo "kernel has no AppArmor: profiles not loaded (sandboxes run under seccomp and capabilities only)"
  exit 0
fi

if [ "${1:-}" = --check ]; then
  missing=0
  for p in "${profiles[@]}"; do
    if grep -q "^$p " "$root/sys/kernel/security/apparmor/profiles" 2>/dev/null; then
      echo "ok      apparmor profile $p loaded"
    else
      echo "missing apparmor profile $p: run infra/apparmor/load.sh as root"
      missing=1
    fi
  done
  exit "$missing"
fi

parser=$(PATH="$PATH:/usr/sbin:/sbin" command -v apparmor_parser || true)
[ -n "$parser" ] || {
  echo "apparmor_parser not found: apt-get install apparmor" >&2
  exit 1
}
bash "$dir/check.sh" >/dev/null
install -d -m 0755 "$root/etc/apparmor.d"
for p in "${profiles[@]}"; do
  install -m 0644 "$dir/$p" "$root/etc/apparmor.d/$p"
  mode=()
  if [ "$p" = studio-api ] && [ "${1:-}" != --enforce-api ]; then mode=(-C); fi
  # -r: replace if loaded; -W: write the cache so boot-time loading is fast.
  "$parser" -r -W "${mode[@]}" "$root/etc/apparmor.d/$p"
  echo "loaded apparmor profile $p${mode:+ (complain mode)}"
done
