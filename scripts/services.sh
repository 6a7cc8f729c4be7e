#!/usr/bin/env bash
# Install (on Debian) and start what the test suite needs: PostgreSQL 15, the Docker engine, Chromium
# with chromedriver, the pinned Amp CLI, and GitHub's published API schemas. Idempotent: anything already present or running is left
# as it is. Source it, then call the ensure_* functions.
#
# Each failure says what failed and shows that command's own output. No pipeline here ends before
# its writer has finished (no `grep -q`, `head` or `awk … exit` reading another command's output):
# under `pipefail` the writer's SIGPIPE would turn success into a failure that depends on timing.

AMP_CLI_VERSION="${AMP_CLI_VERSION:-0.0.1790142911-g7618fb}"
GITHUB_OPENAPI_VERSION="${GITHUB_OPENAPI_VERSION:-23.0.2}"
GITHUB_GRAPHQL_SCHEMA_VERSION="${GITHUB_GRAPHQL_SCHEMA_VERSION:-15.26.1}"
TOOLS_DIR="${TOOLS_DIR:-$(pwd)/target/test-tools}"

log() { printf '[services] %s\n' "$*" >&2; }

# Run a command with its output kept aside; on failure, show the command and what it printed.
quietly() {
  local out status=0
  out=$(mktemp)
  "$@" >"$out" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    log "failed (exit $status): $*"
    cat "$out" >&2
  fi
  rm -f "$out"
  return "$status"
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    log "cannot install $* here (no apt-get); install it yourself"
    return 1
  fi
  if [ "$apt_updated" -eq 0 ]; then
    quietly as_root apt-get update -qq || return 1
    apt_updated=1
  fi
  quietly as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# PostgreSQL: a running cluster on 127.0.0.1:5432 with password login for `postgres`.
ensure_postgres() {
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    log "installing PostgreSQL"
    apt_install postgresql || return 1
  fi
  local version
  version=$(pg_lsclusters --no-header 2>/dev/null | awk 'NR==1 {print $1}')
  if [ -z "$version" ]; then
    version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
    log "creating PostgreSQL $version cluster"
    quietly as_root pg_createcluster "$version" main || return 1
  fi
  local clusters
  clusters=$(pg_lsclusters --no-header) || { log "pg_lsclusters failed"; return 1; }
  if [ -z "$(awk -v v="$version" '$1==v && $2=="main" && $4=="online"' <<<"$clusters")" ]; then
    log "starting PostgreSQL $version"
    quietly as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || return 1
  fi
  local i
  for i in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.5
  done
  pg_isready -q -h 127.0.0.1 -p 5432 || { log "PostgreSQL does not answer on 127.0.0.1:5432"; return 1; }
  quietly as_root su postgres -c "psql -qc \"alter user postgres password 'postgres'\"" || return 1
  export TEST_POSTGRES_URL="${TEST_POSTGRES_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
  # Databases left by interrupted test runs: those untouched for an hour (a run on this machine
  # at the same time keeps its own), dropped unless something still uses them.
  local leftovers name
  leftovers=$(as_root su postgres -c "psql -qAt -c \"select datname from pg_database d where datname like 'amp_test_%' and (pg_stat_file('base/' || d.oid)).modification < now() - interval '1 hour'\"") ||
    { log "could not list the databases left by earlier runs"; return 1; }
  for name in $leftovers; do
    quietly as_root su postgres -c "psql -qc 'drop database if exists \"$name\"'" ||
      log "could not drop $name (left for the next run)"
  done
  log "PostgreSQL ready"
}

# Docker engine (Debian's docker.io, API 1.41), started by hand when no service manager runs it.
ensure_docker() {
  if docker info >/dev/null 2>&1; then
    log "Docker ready"
    return 0
  fi
  if ! command -v dockerd >/dev/null 2>&1; then
    log "installing the Docker engine (docker.io)"
    apt_install docker.io || return 1
  fi
  if ! docker info >/dev/null 2>&1; then
    log "starting dockerd"
    as_root sh -c 'nohup dockerd >/tmp/dockerd.log 2>&1 &'
    local i
    for i in $(seq 1 120); do
      docker info >/dev/null 2>&1 && break
      sleep 0.5
    done
  fi
  if ! docker info >/dev/null 2>&1; then
    log "dockerd did not start; the end of /tmp/dockerd.log:"
    tail -n 40 /tmp/dockerd.log >&2 || true
    return 1
  fi
  log "Docker ready"
}

# Chromium and its matching chromedriver, from Debian.
ensure_chromium() {
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    log "installing chromium and chromium-driver"
    apt_install chromium chromium-driver || return 1
  fi
  export CHROMIUM_BIN="${CHROMIUM_BIN:-$(command -v chromium)}"
  export CHROMEDRIVER_BIN="${CHROMEDRIVER_BIN:-$(command -v chromedriver)}"
  log "Chromium ready"
}

# The real Amp CLI (a native binary from npm), pinned.
ensure_amp_cli() {
  local dir="$TOOLS_DIR/amp-cli"
  local bin="$dir/node_modules/@ampcode/cli-linux-x64/amp"
  if [ ! -x "$bin" ]; then
    command -v npm >/dev/null 2>&1 || { log "npm is needed to install the Amp CLI"; return 1; }
    log "installing @ampcode/cli-linux-x64@$AMP_CLI_VERSION"
    mkdir -p "$dir"
    quietly npm install --no-audit --no-fund --prefix "$dir" "@ampcode/cli-linux-x64@$AMP_CLI_VERSION" || return 1
  fi
  [ -x "$bin" ] || { log "npm finished but $bin is missing"; return 1; }
  export AMP_CLI_BIN="$bin"
  log "Amp CLI ready"
}

# GitHub's published descriptions of its API, pinned: the REST API's OpenAPI description and the
# GraphQL schema, which the GitHub simulator's recorded exchanges are checked against
# (tests/github_schema.rs).
ensure_github_schema() {
  local dir="$TOOLS_DIR/github-schema"
  local openapi="$dir/node_modules/@octokit/openapi/generated/api.github.com.json"
  local graphql="$dir/node_modules/@octokit/graphql-schema/schema.graphql"
  local pins="$dir/versions"
  local packages=("@octokit/openapi@$GITHUB_OPENAPI_VERSION" "@octokit/graphql-schema@$GITHUB_GRAPHQL_SCHEMA_VERSION")
  local installed=""
  if [ -f "$pins" ]; then installed=$(<"$pins"); fi
  if [ ! -f "$openapi" ] || [ ! -f "$graphql" ] || [ "$installed" != "${packages[*]}" ]; then
    command -v npm >/dev/null 2>&1 || { log "npm is needed to install GitHub's API schemas"; return 1; }
    log "installing ${packages[*]}"
    mkdir -p "$dir"
    quietly npm install --no-audit --no-fund --prefix "$dir" "${packages[@]}" || return 1
    printf '%s\n' "${packages[*]}" >"$pins" || { log "cannot write $pins"; return 1; }
  fi
  [ -f "$openapi" ] || { log "npm finished but $openapi is missing"; return 1; }
  [ -f "$graphql" ] || { log "npm finished but $graphql is missing"; return 1; }
  export GITHUB_OPENAPI="$openapi"
  export GITHUB_GRAPHQL_SCHEMA="$graphql"
  log "GitHub's API schemas ready"
}

# Run one of the ignored benchmark tests (tests/bench_*.rs) in release mode with what the tests
# need (PostgreSQL, Docker, the test agent image), printing only its report.
run_bench_test() {
  ensure_postgres
  ensure_docker
  TEST_AGENT_IMAGE=$(./scripts/build-test-agent-image.sh)
  export TEST_AGENT_IMAGE
  # The egress gateway's image, from the release binary the benchmark runs.
  cargo build --release --locked --bin amp-orchestrator
  TEST_GATEWAY_IMAGE=$(env -i PATH="$PATH" ${DOCKER_HOST:+DOCKER_HOST="$DOCKER_HOST"} \
    "${CARGO_TARGET_DIR:-target}/release/amp-orchestrator" gateway-image)
  export TEST_GATEWAY_IMAGE
  cargo test --release --locked --test "$1" -- --ignored --nocapture 2>&1 |
    grep -v -E '^\s*$|^running|^test result|WARN|^test '
}
