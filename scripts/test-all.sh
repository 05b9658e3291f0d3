#!/usr/bin/env bash
# The README's test command: installs what the tests need (Debian packages, npm ci), then runs
# typecheck, lint, build and every test. Tests start their own etcd, SoftHSM tokens, plugins and
# servers in temporary directories on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-test-deps.sh
npm ci --no-audit --no-fund
# Issue #8 §6: the test helpers copy every atrest process's stderr and the in-process servers' JSON
# logs here, and register the secrets the tests use; the scan below must find none of them in a log.
ATREST_TEST_LOG_DIR="$(mktemp -d -t atrest-test-logs.XXXXXX)"
export ATREST_TEST_LOG_DIR
npm test
node --import tsx scripts/scan-test-logs.ts "$ATREST_TEST_LOG_DIR"
rm -rf "$ATREST_TEST_LOG_DIR"
unset ATREST_TEST_LOG_DIR
# Benchmarks in quick mode: no speed is asserted; it must complete and print its tables (issue #7).
npm run bench -- --quick
