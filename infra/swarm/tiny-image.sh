#!/usr/bin/env bash
# Builds a tiny image (about 2 MB) in the host's dockerd from Debian's static busybox, for trying services on
# the netns swarm: no image registry is reachable, so the swarm tests need an image made here and `load`ed
# into every node. It holds /bin/busybox with a link per applet (sh, sleep, httpd, nc, nslookup...) and
# /www/index.html (the text "studio-swarm") for `httpd -f -p PORT -h /www`. Use nc, not wget, as a client:
# Debian's static busybox wget segfaults here (static glibc), nc and nslookup work.
#
#   tiny-image.sh [NAME]   default studio-swarm-tiny:latest; prints the name
#
# Installs busybox-static with apt-get when busybox is missing (needs root, as the swarm does).
set -euo pipefail

name=${1:-studio-swarm-tiny:latest}
die() {
  printf '[tiny-image] error: %s\n' "$*" >&2
  exit 1
}

if ! command -v busybox >/dev/null; then
  [ "$(id -u)" = 0 ] || die "busybox is missing: run as root apt-get install -y busybox-static"
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static; }; } \
    >/dev/null 2>&1 || die "could not install busybox-static: run as root apt-get update && apt-get install -y busybox-static"
fi
bb=$(command -v busybox)
# Debian's plain `busybox` package is linked dynamically and would not run in an image without libc.
if ldd "$bb" >/dev/null 2>&1; then
  die "$bb is linked dynamically: apt-get install -y busybox-static (it replaces busybox)"
fi

root=$(mktemp -d "${TMPDIR:-/tmp}/studio-tiny.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin" "$root/www" "$root/tmp" "$root/etc"
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
done
echo studio-swarm >"$root/www/index.html"
echo 'root:x:0:0:root:/:/bin/sh' >"$root/etc/passwd"
chmod 1777 "$root/tmp"
tar -C "$root" --numeric-owner --owner=0 --group=0 -cf - . |
  docker import --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' - "$name" >/dev/null ||
  die "docker import failed: is the host's dockerd running (docker info)?"
echo "$name"
