#!/usr/bin/env bash
# Checks that the studio-sandbox AppArmor profile compiles, without loading it (works on hosts whose
# kernel has no AppArmor). Exit 0: it compiles; non-zero: a syntax or semantic error, or no parser.
set -euo pipefail
profile="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/studio-sandbox"

# apparmor_parser lives in /usr/sbin, which a non-root PATH may lack.
parser=$(PATH="$PATH:/usr/sbin:/sbin" command -v apparmor_parser || true)
if [ -z "$parser" ]; then
  echo "apparmor_parser not found: apt-get install apparmor" >&2
  exit 1
fi

# -Q: compile but do not load into the kernel; -K: no cache. The cache warning printed on kernels
# without AppArmor is noise; every other line is kept.
if ! out=$("$parser" -Q -K "$profile" 2>&1); then
  printf '%s\n' "$out" | grep -v '^Cache read/write disabled' >&2 || true
  echo "AppArmor profile $profile does not compile (see above)" >&2
  exit 1
fi
echo "AppArmor profile studio-sandbox compiles"
