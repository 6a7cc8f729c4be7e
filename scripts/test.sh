#!/usr/bin/env bash
# Run the whole test suite, on SQLite and on PostgreSQL, after installing and starting what it needs
# (PostgreSQL 15, the Docker engine, Chromium with chromedriver and the pinned Amp CLI, on Debian).
# Extra arguments go to `cargo test`.
#
# Under CI=true a service that cannot be installed or started is a failure; elsewhere it is too,
# because the suite has no "skip" mode: a test without its database fails rather than passing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh

fail() { printf '[test] %s\n' "$*" >&2; exit 1; }

ensure_postgres || fail "PostgreSQL is needed by the tests and could not be started"
ensure_docker || fail "the Docker engine is needed by the tests and could not be started"
# Containers and volumes left by an interrupted earlier run.
docker ps -aq --filter label=io.amp-orchestrator.owned=true | xargs -r docker rm -f >/dev/null ||
  fail "could not remove the containers an earlier run left"
docker volume ls -q --filter label=io.amp-orchestrator.owned=true | xargs -r docker volume rm -f >/dev/null ||
  fail "could not remove the volumes an earlier run left"
TEST_AGENT_IMAGE=$(./scripts/build-test-agent-image.sh) || fail "the test agent image could not be built"
export TEST_AGENT_IMAGE
ensure_chromium || fail "Chromium and chromedriver are needed by the browser test and could not be installed"
ensure_amp_cli || fail "the Amp CLI could not be installed from npm"
TEST_REAL_AMP_IMAGE=$(./scripts/build-test-agent-image.sh --real-amp "$AMP_CLI_BIN") ||
  fail "the test image with the real Amp CLI could not be built"
export TEST_REAL_AMP_IMAGE

if ! command -v cargo >/dev/null 2>&1; then
  fail "cargo is not installed (https://rustup.rs)"
fi

export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
locked=()
if [ -f Cargo.lock ]; then locked=(--locked); fi
cargo test --workspace "${locked[@]}" "$@"
