#!/usr/bin/env bash
# Webhook flood benchmark: builds the release binary, starts it on loopback (SQLite in a temporary
# directory) and sends BENCH_FLOOD_REQUESTS (default 40) concurrent POSTs of BENCH_FLOOD_MIB
# (default 25) MiB each to /api/github/webhooks, every one with a well-formed but forged
# X-Hub-Signature-256, as anyone on the internet can. Prints the server's resident memory before,
# its peak (VmHWM from /proc/PID/status) and how the requests were answered.
# Server settings (MAX_CONCURRENT_WEBHOOK_BODIES, BODY_READ_TIMEOUT, ...) are taken from the
# environment; BENCH_BINARY runs an already built binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."

requests="${BENCH_FLOOD_REQUESTS:-40}"
mib="${BENCH_FLOOD_MIB:-25}"
if [ -n "${BENCH_BINARY:-}" ]; then
  binary="$BENCH_BINARY"
else
  cargo build --release --locked --bin amp-orchestrator
  binary="${CARGO_TARGET_DIR:-target}/release/amp-orchestrator"
fi

work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

kib() { # field of /proc/PID/status, in KiB
  local line
  while read -r line; do
    case "$line" in "$2:"*) set -- $line; echo "$2"; return ;; esac
  done <"/proc/$1/status"
}

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
head -c "$((mib * 1024 * 1024))" /dev/zero >"$work/body"

WEBHOOK_SECRET="${WEBHOOK_SECRET:-bench-flood-secret-0123456789}" \
  HOST=127.0.0.1 PORT="$port" DATABASE_URL="sqlite://$work/bench.sqlite" \
  LOG_LEVEL="${LOG_LEVEL:-error}" MAX_CONCURRENT_TASKS=0 \
  "$binary" serve &
server=$!
for _ in $(seq 100); do
  curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" && break
  sleep 0.1
done
curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" || { echo "the server did not start" >&2; exit 1; }
sleep 1
before="$(kib "$server" VmRSS)"

forged="sha256=$(printf '0%.0s' $(seq 64))"
started="$(date +%s%N)"
clients=()
for i in $(seq "$requests"); do
  # No `Expect: 100-continue`: the body is sent whatever the server would say.
  curl -s -o /dev/null -w '%{http_code}\n' --max-time 120 -X POST -T "$work/body" \
    -H 'Expect:' -H 'Content-Type: application/json' -H 'X-GitHub-Event: issue_comment' \
    -H "X-GitHub-Delivery: flood-$i" -H "X-Hub-Signature-256: $forged" \
    "http://127.0.0.1:$port/api/github/webhooks" >"$work/answer-$i" 2>/dev/null &
  clients+=("$!")
done
for client in "${clients[@]}"; do wait "$client" || true; done
elapsed_ms="$((($(date +%s%N) - started) / 1000000))"
peak="$(kib "$server" VmHWM)"
after="$(kib "$server" VmRSS)"

echo "requests: $requests concurrent POSTs of $mib MiB with a forged signature, all answered in $elapsed_ms ms"
printf 'answers:'
cat "$work"/answer-* | sort | uniq -c | while read -r count code; do printf ' %s x %s' "$count" "$code"; done
echo
echo "server resident memory: before $before KiB, peak $peak KiB (VmHWM), after $after KiB"
echo "peak minus before: $(((peak - before) / 1024)) MiB"
