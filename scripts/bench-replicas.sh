#!/usr/bin/env bash
# Replica benchmark (tests/bench_replicas.rs): BENCH_TASKS (default 200) tasks in a burst on one
# `serve` process, then on two sharing one PostgreSQL; tasks/minute, comment → agent start
# p50/p95, and the scaling from one replica to two. Needs what the tests need (PostgreSQL,
# Docker, the test agent image).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
run_bench_test bench_replicas
