#!/usr/bin/env bash
# The README's test command: installs what the tests need (Debian packages, npm ci), then runs
# typecheck, lint, build and every test. Tests start their own etcd, SoftHSM tokens, plugins and
# servers in temporary directories on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
npm ci --no-audit --no-fund
npm test
