#!/usr/bin/env bash
# Agent flood benchmark (tests/bench_agent_flood.rs): the service's peak resident memory
# (VmHWM) while a task's agent floods its output (one endless line on stdout or stderr, a
# million lines, four endless lines at once), with how each task ended. BENCH_BACKENDS
# (default sqlite; sqlite,postgres for both). Needs what the tests need (Docker, the test agent
# image, PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/services.sh
run_bench_test bench_agent_flood
