#!/usr/bin/env bash
# Regenerates src/gen from proto/ (committed output; run after editing a .proto).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf src/gen
PATH="$PWD/node_modules/.bin:$PATH" buf generate
echo "generated: $(find src/gen -name '*.ts' | sort | tr '\n' ' ')"
