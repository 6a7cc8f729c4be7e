#!/usr/bin/env bash
# CI round benchmark (tests/bench_ci_round.rs): failing check_suite webhook → agent process
# start on the failure report, p50/p95 over BENCH_TASKS (default 20) tasks, with the job log
# download reported apart. Needs what the tests need (Docker, the test agent image).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
run_bench_test bench_ci_round
