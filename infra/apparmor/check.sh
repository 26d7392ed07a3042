#!/usr/bin/env bash
# Checks that every AppArmor profile of Studio compiles (studio-sandbox, studio-api), without loading it
# (works on hosts whose kernel has no AppArmor). Exit 0: all compile; 1: a syntax or semantic error, or no
# parser. `check.sh FILE...` checks the given files instead.
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ $# -gt 0 ]; then profiles=("$@"); else profiles=("$dir/studio-sandbox" "$dir/studio-api"); fi

# apparmor_parser lives in /usr/sbin, which a non-root PATH may lack.
parser=$(PATH="$PATH:/usr/sbin:/sbin" command -v apparmor_parser || true)
if [ -z "$parser" ]; then
  echo "apparmor_parser not found: apt-get install apparmor" >&2
  exit 1
fi

status=0
for profile in "${profiles[@]}"; do
  # -Q: compile but do not load into the kernel; -K: no cache. The cache warning printed on kernels
  # without AppArmor is noise; every other line is kept.
  if ! out=$("$parser" -Q -K "$profile" 2>&1); then
    printf '%s\n' "$out" | grep -v '^Cache read/write disabled' >&2 || true
    echo "AppArmor profile $profile does not compile (see above)" >&2
    status=1
  else
    echo "AppArmor profile $(basename "$profile") compiles"
  fi
done
exit "$status"
