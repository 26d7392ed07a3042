#!/usr/bin/env bash
# Builds the in-sandbox agent (guest/, Rust, std only) as one static binary and puts it at
# agent/studio-agent, beside the rest of AGENT_DIR (mounted read-only at /opt/studio in sandboxes).
# Offline: no crates are fetched. Quick when nothing changed (cargo's own incremental check).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="${PATH}:${HOME:-/root}/.cargo/bin:/root/.cargo/bin"
if ! command -v cargo >/dev/null 2>&1; then
  echo "build-agent: cargo not found: install Rust (apt-get install cargo, or rustup) to build the agent" >&2
  exit 1
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
