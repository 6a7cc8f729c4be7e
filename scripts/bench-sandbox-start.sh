#!/usr/bin/env bash
# Sandbox start benchmark (tests/bench_sandbox_start.rs): a task network with the egress gateway
# connected, a sandboxed agent (network, gateway, container, its address) and, for comparison, an
# agent on the default bridge; p50/p95/max over BENCH_TASKS (default 10) tasks. Needs what the
# tests need (Docker, the test agent image).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
run_bench_test bench_sandbox_start
