#!/usr/bin/env bash
# Builds the in-sandbox agent (guest/, Rust, std only) as one static binary and puts it at
# agent/studio-agent, beside the rest of AGENT_DIR (mounted read-only at /opt/studio in sandboxes).
# Offline: no crates are fetched. Quick when nothing changed (cargo's own incremental check).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="${PATH}:${HOME:-/root}/.cargo/bin:/root/.cargo/bin"
fail() {
  echo "build-agent: error: $*" >&2
  exit 1
}
if ! command -v cargo >/dev/null 2>&1; then
  fail "cargo not found: install a current Rust with rustup (https://rustup.rs; Debian 12's rustc 1.63 is too old), then rerun $0"
fi
# The static build links with gcc against glibc's static libc.a (libc6-dev): Rust's own toolchain brings
# neither. Installed here when missing (the gVisor backend no longer needs gcc, so nothing else installs it).
static_libc() { command -v gcc >/dev/null 2>&1 && [ -f "$(gcc -print-file-name=libc.a)" ]; }
if ! static_libc; then
  if [ "$(id -u)" = 0 ]; then as_root=(); elif command -v sudo >/dev/null 2>&1; then as_root=(sudo -n); else as_root=(false); fi
  echo "build-agent: installing gcc and libc6-dev (the agent links statically against glibc)" >&2
  { "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev ||
    { "${as_root[@]}" apt-get update -qq && "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends gcc libc6-dev; }; } >/dev/null 2>&1 || true
  static_libc || fail "gcc and libc6-dev (static libc.a) are needed to link the agent: run as root apt-get install -y gcc libc6-dev, then rerun $0"
fi
target="$(rustc -vV | sed -n 's/^host: //p')"
# The crt-static/panic flags go through RUSTFLAGS so the build stays std-only and static (glibc).
export RUSTFLAGS="-C target-feature=+crt-static -C panic=abort ${STUDIO_AGENT_RUSTFLAGS:-}"
cargo build --offline --release --quiet --manifest-path "$here/guest/Cargo.toml" --target "$target"
bin="$here/guest/target/$target/release/studio-agent"
dest="$here/agent/studio-agent"
if ! cmp -s "$bin" "$dest" 2>/dev/null; then
  install -m 0755 "$bin" "$dest.tmp"
  mv -f "$dest.tmp" "$dest"
fi
echo "build-agent: $dest ($(stat -c %s "$dest") bytes)"
