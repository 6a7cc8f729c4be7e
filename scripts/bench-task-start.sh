#!/usr/bin/env bash
# Task start benchmark (tests/bench_task_start.rs): webhook → agent process start, p50/p95 over
# BENCH_TASKS (default 20) tasks, split into the service's time and Docker's, and memory per
# running task. Needs what the tests need (Docker, the test agent image). Agents run in the
# sandbox; BENCH_EGRESS=open runs them without it, for comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
run_bench_test bench_task_start
