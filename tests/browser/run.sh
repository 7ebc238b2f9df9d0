#!/usr/bin/env bash
# The browser end-to-end tests: bash tests/browser/run.sh (from the repo root or anywhere).
# Finds or starts Postgres, a current nats-server and nginx (scripts/lib/services.sh),
# installs Debian's chromium when missing, installs playwright-core (npm ci), builds
# `tidings`, then runs the node tests. Exit status: the tests'.
# Extra arguments go to `node --test` (e.g. a single file: bash tests/browser/run.sh failover.test.mjs).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
cd "$REPO"

# shellcheck source=../../scripts/lib/services.sh
source scripts/lib/services.sh

ensure_postgres
ensure_nats
ensure_nginx

export CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] || install_packages "the browser tests (set CHROMIUM to use another)" chromium
ensure_node

log "npm ci (playwright-core; it downloads no browser)"
(cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)

log "cargo build --locked -p tidings"
cargo build --locked -p tidings

mkdir -p target/browser-artifacts
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
  files=()
  for f in "$HERE"/*.test.mjs; do files+=("$(basename "$f")"); done
fi
log "running ${files[*]}"
status=0
(cd "$HERE" && node --test --test-concurrency=1 --test-timeout=300000 "${files[@]}") || status=$?
log "browser tests exited $status; screenshots in target/browser-artifacts/"
exit "$status"
