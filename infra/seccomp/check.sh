#!/usr/bin/env bash
# Checks the Docker backend's seccomp profile:
#   1. studio.json is what generate.mjs derives from docker-default.json (no hand edits, no drift);
#   2. when Docker and the sandbox image are available, a sandbox under the profile runs Node, Python and
#      git, and every syscall the profile removes fails (probe.py), with and without CAP_SYS_ADMIN.
# Usage: infra/seccomp/check.sh [--static]   (--static: step 1 only)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
profile=$here/studio.json
image=${STUDIO_IMAGE:-studio-sandbox:latest}

command -v node >/dev/null || { echo "node not found: Studio needs Node 20 (https://nodejs.org)" >&2; exit 1; }
node "$here/generate.mjs" --check
[ "${1:-}" != --static ] || exit 0

if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
  echo "Docker unavailable: only the static check ran (infra/setup-runtimes.sh starts it)"
  exit 0
fi
docker image inspect "$image" >/dev/null 2>&1 || { echo "$image missing: run infra/image/build.sh" >&2; exit 1; }

sandbox() {
  docker run --rm --network none --cap-drop ALL --security-opt no-new-privileges \
    --security-opt "seccomp=$profile" --read-only --tmpfs /tmp:size=64m \
    -v "$here/probe.py:/opt/studio/probe.py:ro" "$@"
}

fail=0
out=$(sandbox "$image" sh -c '
  node -e 1 && echo node-ok
  python3 -c 1 && echo python-ok
  git init -q /tmp/x && echo git-ok
  unshare -U true 2>/dev/null || echo unshare-denied
  grep "^Seccomp:" /proc/self/status' 2>&1) || true
for want in node-ok python-ok git-ok unshare-denied $'Seccomp:\t2'; do
  grep -qxF "$want" <<<"$out" || { echo "missing: $want" >&2; fail=1; }
done

# Every probe but the controls must be refused, whatever capabilities are added back.
for caps in "" "--cap-add SYS_ADMIN --cap-add SYS_PTRACE --cap-add DAC_READ_SEARCH"; do
  # shellcheck disable=SC2086 # $caps is a list of flags
  probe=$(sandbox $caps "$image" python3 /opt/studio/probe.py 2>&1) || true
  while IFS= read -r line; do
    case "$line" in
      getpid* | memfd_create* | "personality(query)"*) [[ $line != *EPERM* ]] || { echo "control refused: $line" >&2; fail=1; } ;;
      clone3*) [[ $line == *ENOSYS* ]] || { echo "clone3 not ENOSYS${caps:+ ($caps)}: $line" >&2; fail=1; } ;;
      int80*) [[ $line == *"killed by signal 31"* ]] || { echo "32-bit syscall not killed: $line" >&2; fail=1; } ;;
      *) [[ $line == *EPERM* ]] || { echo "not refused${caps:+ ($caps)}: $line" >&2; fail=1; } ;;
    esac
  done <<<"$probe"
done

if [ $fail = 0 ]; then
  echo "seccomp profile studio.json enforced as documented"
else
  echo "seccomp profile check failed (see above)" >&2
fi
exit $fail
