#!/usr/bin/env bash
# Build the agent image the tests use, from this machine's own binaries (no registry is needed):
# a POSIX shell, git (with HTTP transport) and a few tools, their shared libraries, a non-root
# user `agent` (uid 1000), and the stub `amp` from docker/agent-test/amp. Tagged
# amp-orchestrator-test-agent:<content hash> and :latest; rebuilt only when its inputs change.
#
# With `--real-amp <path to the amp binary>`, it then builds amp-orchestrator-test-agent-real on
# top, with the real Amp CLI in place of the stub, and prints that image's name instead.
set -euo pipefail
cd "$(dirname "$0")/.."

real_amp=""
if [ "${1:-}" = "--real-amp" ]; then
  real_amp="${2:?--real-amp needs the path of the amp binary}"
fi

build_real() {
  local base="$1"
  [ -n "$real_amp" ] || { echo "$base"; return; }
  local real_name="${NAME}-real"
  local real_hash
  real_hash=$( (echo "$base"; sha256sum "$real_amp") | sha256sum | cut -c1-16)
  if ! docker image inspect "$real_name:$real_hash" >/dev/null 2>&1; then
    local ctx
    ctx=$(mktemp -d)
    mkdir -p "$ctx/root/usr/local/bin"
    cp "$real_amp" "$ctx/root/usr/local/bin/amp"
    # Its linked libraries, and those it opens at run time.
    { ldd "$real_amp" 2>/dev/null | grep -o '/[^ ]*'
      for extra in libgcc_s.so.1 libstdc++.so.6 librt.so.1 libresolv.so.2 libutil.so.1 libanl.so.1 libz.so.1; do
        ldconfig -p | awk -v l="$extra" '$1 == l && /x86-64/ {print $NF; exit}'
      done
    } | while read -r lib; do
      mkdir -p "$ctx/root$(dirname "$lib")"
      cp -L "$lib" "$ctx/root$lib"
    done
    printf 'FROM %s\nCOPY --chown=0:0 root/ /\n' "$base" > "$ctx/Dockerfile"
    DOCKER_BUILDKIT=0 docker build -q -t "$real_name:$real_hash" "$ctx" >/dev/null
    rm -rf "$ctx"
  fi
  echo "$real_name:$real_hash"
}

NAME="${TEST_AGENT_IMAGE_NAME:-amp-orchestrator-test-agent}"
TOOLS=(sh cat env sleep head tail tr ls mkdir rm cp mv find grep sed wc sort id date readlink dirname basename touch chmod true false printf expr uname)

git_exec=$(git --exec-path)
hash=$( (cat "$0" docker/agent-test/amp; git --version; for t in "${TOOLS[@]}"; do command -v "$t" || true; done) | sha256sum | cut -c1-16)
if docker image inspect "$NAME:$hash" >/dev/null 2>&1; then
  docker tag "$NAME:$hash" "$NAME:latest"
  build_real "$NAME:$hash"
  exit 0
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,usr/bin,usr/local/bin,etc,tmp,home/agent,workspace,proc,sys,dev}
chmod 1777 "$root/tmp"

copy_with_libs() {
  local bin="$1" dest="$2"
  mkdir -p "$(dirname "$root$dest")"
  cp -L "$bin" "$root$dest"
  ldd "$bin" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
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
  [ -x "$git_exec/$helper" ] && copy_with_libs "$git_exec/$helper" "$git_exec/$helper"
done
for templates in /usr/local/share/git-core/templates /usr/share/git-core/templates; do
  if [ -d "$templates" ]; then mkdir -p "$root$templates"; cp -a "$templates/." "$root$templates/"; fi
done
# git's own link targets inside exec-path point at the git binary by path.
[ "$git_bin" != /usr/bin/git ] && { mkdir -p "$root$(dirname "$git_bin")"; cp -L "$git_bin" "$root$git_bin"; }
# Name resolution libraries and CA certificates for HTTP(S).
for lib in /lib/x86_64-linux-gnu/libnss_files.so.2 /lib/x86_64-linux-gnu/libnss_dns.so.2; do
  [ -e "$lib" ] && copy_with_libs "$lib" "$lib"
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

tar -C "$root" --numeric-owner -c . | docker import \
  -c 'USER agent' \
  -c 'WORKDIR /workspace' \
  -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin HOME=/home/agent' \
  -c 'CMD ["sleep","infinity"]' \
  - "$NAME:$hash" >/dev/null
docker tag "$NAME:$hash" "$NAME:latest"
build_real "$NAME:$hash"
