#!/usr/bin/env bash
# Webhook intake benchmark (see examples/bench_intake.rs): builds the release binary, starts
# PostgreSQL, and measures the service on SQLite and PostgreSQL against a bare axum endpoint.
# Extra arguments go to the benchmark, e.g. --deliveries 20000 --concurrency 64.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
ensure_postgres
cargo build --release --locked --bin amp-orchestrator --example bench_intake
exec target/release/examples/bench_intake "$@"
