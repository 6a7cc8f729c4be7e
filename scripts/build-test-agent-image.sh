#!/usr/bin/env bash
# Build the agent image the tests use, from this machine's own binaries (no registry is needed):
# a POSIX shell, git (with HTTP transport) and a few tools, their shared libraries, a non-root
# user `agent` (uid 1000), and the stub `amp` from docker/agent-test/amp. Tagged
# amp-orchestrator-test-agent:<content hash> and :latest; rebuilt only when its inputs change.
#
# With `--real-amp <path to the amp binary>`, it then builds amp-orchestrator-test-agent-real on
# top, with the real Amp CLI in place of the stub, and prints that image's name instead.
#
# Only the image's name goes to stdout. Every failure says on stderr which command failed and
# shows that command's own output. No pipeline here may end before its writer has finished: a
# reader that stops early (`head`, `grep -q`, `awk … exit`) kills the writer with SIGPIPE, which
# `pipefail` turns into a failure that depends on timing.
set -eEuo pipefail
cd "$(dirname "$0")/.."

fail() { printf '[image] %s\n' "$*" >&2; exit 1; }
trap 'fail "line $LINENO failed: $BASH_COMMAND"' ERR

# Run a command with its output kept aside; on failure, show the command and what it printed.
logged() {
  local out status=0
  out=$(mktemp)
  "$@" >"$out" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    printf '[image] failed (exit %s): %s\n' "$status" "$*" >&2
    cat "$out" >&2
    rm -f "$out"
    return "$status"
  fi
  rm -f "$out"
}

# The absolute paths of the shared libraries a binary links against (none for a static binary).
linked_libs() {
  local listing
  listing=$(ldd "$1" 2>/dev/null) || return 0
  grep -o '/[^ ]*' <<<"$listing" || true
}

real_amp=""
if [ "${1:-}" = "--real-amp" ]; then
  real_amp="${2:?--real-amp needs the path of the amp binary}"
  [ -x "$real_amp" ] || fail "no executable Amp CLI at $real_amp"
fi

build_real() {
  local base="$1"
  [ -n "$real_amp" ] || { echo "$base"; return; }
  local real_name="${NAME}-real"
  local real_hash
  real_hash=$( (echo "$base"; sha256sum "$real_amp") | sha256sum | cut -c1-16)
  if ! docker image inspect "$real_name:$real_hash" >/dev/null 2>&1; then
    local ctx cache lib
    ctx=$(mktemp -d)
    mkdir -p "$ctx/root/usr/local/bin"
    cp "$real_amp" "$ctx/root/usr/local/bin/amp"
    # Its linked libraries, and those it opens at run time (found in the loader's cache, read
    # whole before it is searched).
    cache=$(ldconfig -p)
    {
      linked_libs "$real_amp"
      for extra in libgcc_s.so.1 libstdc++.so.6 librt.so.1 libresolv.so.2 libutil.so.1 libanl.so.1 libz.so.1; do
        awk -v l="$extra" '$1 == l && /x86-64/ && !found {print $NF; found = 1}' <<<"$cache"
      done
    } >"$ctx/libs"
    while read -r lib; do
      [ -n "$lib" ] || continue
      mkdir -p "$ctx/root$(dirname "$lib")"
      cp -L "$lib" "$ctx/root$lib"
    done <"$ctx/libs"
    rm -f "$ctx/libs"
    printf 'FROM %s\nCOPY --chown=0:0 root/ /\n' "$base" > "$ctx/Dockerfile"
    logged env DOCKER_BUILDKIT=0 docker build -t "$real_name:$real_hash" "$ctx"
    rm -rf "$ctx"
  fi
  echo "$real_name:$real_hash"
}

NAME="${TEST_AGENT_IMAGE_NAME:-amp-orchestrator-test-agent}"
TOOLS=(sh cat env sleep head tail tr ls mkdir rm cp mv find grep sed wc sort id date readlink dirname basename touch chmod true false printf expr uname tar)

git_exec=$(git --exec-path)
hash=$( (cat "$0" docker/agent-test/amp; git --version; for t in "${TOOLS[@]}"; do command -v "$t" || true; done) | sha256sum | cut -c1-16)
if docker image inspect "$NAME:$hash" >/dev/null 2>&1; then
  logged docker tag "$NAME:$hash" "$NAME:latest"
  build_real "$NAME:$hash"
  exit 0
fi

root=$(mktemp -d)
trap 'rm -rf "$root" "$root.tar"' EXIT
mkdir -p "$root"/{bin,usr/bin,usr/local/bin,etc,tmp,home/agent,workspace,proc,sys,dev}
chmod 1777 "$root/tmp"

copy_with_libs() {
  local bin="$1" dest="$2" lib
  mkdir -p "$(dirname "$root$dest")"
  cp -L "$bin" "$root$dest"
  for lib in $(linked_libs "$bin"); do
    [ -e "$root$lib" ] && continue
    mkdir -p "$(dirname "$root$lib")"
    cp -L "$lib" "$root$lib"
  done
}

for tool in "${TOOLS[@]}"; do
  path=$(command -v "$tool" || true)
  [ -n "$path" ] && [ -x "$path" ] && [ "${path#/}" != "$path" ] || continue
  copy_with_libs "$path" "/usr/bin/$tool"
done
cp "$root/usr/bin/sh" "$root/bin/sh"
git_bin=$(command -v git)
copy_with_libs "$git_bin" "/usr/bin/git"
mkdir -p "$root$git_exec"
cp -a "$git_exec/." "$root$git_exec/"
for helper in git-remote-http git-http-fetch git-http-push; do
  if [ -x "$git_exec/$helper" ]; then copy_with_libs "$git_exec/$helper" "$git_exec/$helper"; fi
done
for templates in /usr/local/share/git-core/templates /usr/share/git-core/templates; do
  if [ -d "$templates" ]; then mkdir -p "$root$templates"; cp -a "$templates/." "$root$templates/"; fi
done
# git's own link targets inside exec-path point at the git binary by path.
if [ "$git_bin" != /usr/bin/git ]; then
  mkdir -p "$root$(dirname "$git_bin")"
  cp -L "$git_bin" "$root$git_bin"
fi
# Name resolution libraries and CA certificates for HTTP(S).
for lib in /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libnss_dns.so.2; do
  if [ -e "$lib" ]; then copy_with_libs "$lib" "$lib"; fi
done
if [ -e /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$root/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi
printf 'root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:agent:/home/agent:/bin/sh\n' > "$root/etc/passwd"
printf 'root:x:0:\nagent:x:1000:\n' > "$root/etc/group"
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
printf '127.0.0.1 localhost\n' > "$root/etc/hosts"
install -m 0755 docker/agent-test/amp "$root/usr/local/bin/amp"
chown -R 0:0 "$root"
chown 1000:1000 "$root/home/agent" "$root/workspace"

# The root file system is written to a file first, so a failing import shows its own message
# rather than a broken pipe.
tar -C "$root" --numeric-owner -cf "$root.tar" .
logged docker import \
  -c 'USER agent' \
  -c 'WORKDIR /workspace' \
  -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin HOME=/home/agent' \
  -c 'CMD ["sleep","infinity"]' \
  "$root.tar" "$NAME:$hash"
rm -f "$root.tar"
logged docker tag "$NAME:$hash" "$NAME:latest"
build_real "$NAME:$hash"
