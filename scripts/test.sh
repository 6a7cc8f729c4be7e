#!/usr/bin/env bash
# Run the whole test suite, on SQLite and on PostgreSQL, after installing and starting what it needs
# (PostgreSQL 15, the Docker engine, Chromium with chromedriver, the pinned Amp CLI and GitHub's
# published API schemas, on Debian); then check every exchange the GitHub simulator served in it
# against those schemas (tests/github_schema.rs). Extra arguments go to the suite's `cargo test`.
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
docker network ls -q --filter label=io.amp-orchestrator.owned=true | xargs -r docker network rm >/dev/null ||
  fail "could not remove the networks an earlier run left"
docker network ls -q --filter label=io.amp-orchestrator.test | xargs -r docker network rm >/dev/null ||
  fail "could not remove the test networks an earlier run left"
# Gateway images built from earlier builds of the binary (a debug build's is 250 MB); the tests
# build the one they need.
docker images -q amp-orchestrator-gateway | sort -u | xargs -r docker rmi -f >/dev/null ||
  fail "could not remove the gateway images of earlier runs"
# Setup snapshots the tests of earlier runs saved (their databases are gone).
docker images -q amp-orchestrator-snapshot | sort -u | xargs -r docker rmi -f >/dev/null ||
  fail "could not remove the setup snapshots of earlier runs"
TEST_AGENT_IMAGE=$(./scripts/build-test-agent-image.sh) || fail "the test agent image could not be built"
export TEST_AGENT_IMAGE
ensure_chromium || fail "Chromium and chromedriver are needed by the browser test and could not be installed"
ensure_amp_cli || fail "the Amp CLI could not be installed from npm"
TEST_REAL_AMP_IMAGE=$(./scripts/build-test-agent-image.sh --real-amp "$AMP_CLI_BIN") ||
  fail "the test image with the real Amp CLI could not be built"
export TEST_REAL_AMP_IMAGE
ensure_github_schema || fail "GitHub's published API schemas could not be installed from npm"
# Each GitHub simulator of this run records the exchanges it serves here, for the check after the
# suite; nothing from an earlier run stays.
export GITHUB_SIM_RECORD_DIR="$PWD/target/github-sim-exchanges"
rm -rf "$GITHUB_SIM_RECORD_DIR" || fail "could not empty $GITHUB_SIM_RECORD_DIR"
mkdir -p "$GITHUB_SIM_RECORD_DIR" || fail "could not create $GITHUB_SIM_RECORD_DIR"

if ! command -v cargo >/dev/null 2>&1; then
  fail "cargo is not installed (https://rustup.rs)"
fi

export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
locked=()
if [ -f Cargo.lock ]; then locked=(--locked); fi
# The egress gateway's image, from the binary under test (as the service builds it from itself
# when it is missing); those of earlier builds go.
cargo build "${locked[@]}" --bin amp-orchestrator || fail "the service could not be built"
TEST_GATEWAY_IMAGE=$(env -i PATH="$PATH" ${DOCKER_HOST:+DOCKER_HOST="$DOCKER_HOST"} "${CARGO_TARGET_DIR:-target}/debug/amp-orchestrator" gateway-image) ||
  fail "the gateway image could not be built"
export TEST_GATEWAY_IMAGE
docker images amp-orchestrator-gateway --format '{{.Repository}}:{{.Tag}}' |
  { grep -vxF "$TEST_GATEWAY_IMAGE" || true; } | xargs -r docker rmi >/dev/null 2>&1 || true
cargo test --workspace "${locked[@]}" "$@" || fail "the test suite failed"
if [ "$#" -gt 0 ] && ! compgen -G "$GITHUB_SIM_RECORD_DIR/*.jsonl" >/dev/null; then
  # A part of the suite chosen by the arguments that started no simulator: nothing to check.
  printf '[test] no GitHub simulator exchanges were recorded by this part of the suite; the schema check is skipped\n' >&2
  exit 0
fi
cargo test "${locked[@]}" --test github_schema -- --ignored --nocapture ||
  fail "the GitHub simulator's exchanges do not all follow GitHub's published API schemas"
