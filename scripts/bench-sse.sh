#!/usr/bin/env bash
# Live log benchmark (examples/bench_sse.rs): one task, --subscribers SSE clients (default 1000),
# --lines log lines (default 10000) published at --rate lines/s (default 500); delivered lines/s,
# publish-to-receipt latency, and the server's memory per subscriber. Server and clients run in
# separate processes on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release --locked --example bench_sse
exec target/release/examples/bench_sse "$@"
