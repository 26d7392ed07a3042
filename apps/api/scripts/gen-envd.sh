#!/usr/bin/env sh
# Regenerates apps/api/src/e2b/envd/gen/ from the envd protos (buf and protoc-gen-es from node_modules; offline).
set -eu
root=$(cd "$(dirname "$0")/../../.." && pwd)
proto="$root/apps/api/src/e2b/envd/proto"
rm -rf "$root/apps/api/src/e2b/envd/gen"
cd "$proto"
"$root/node_modules/.bin/buf" generate
cd "$root"
node_modules/.bin/biome check --write apps/api/src/e2b/envd/gen >/dev/null
