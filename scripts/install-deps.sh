#!/usr/bin/env bash
# Installs what edgegate needs to build, test and benchmark on Debian 12 (as root, or with sudo).
# Does nothing (and needs no network) when everything is already there.
set -euo pipefail

packages=(
  # build
  g++ cmake ninja-build ccache pkg-config
  libboost1.81-all-dev libssl-dev libnghttp2-dev libssh-dev libhiredis-dev libspdlog-dev catch2 libjemalloc-dev
  # run-time peers for tests and benchmarks
  python3 curl redis-server nginx-light haproxy wrk nghttp2-client openssh-client openssh-server
  python3-h2 python3-websockets ca-certificates openssl procps util-linux chromium
  tmux ssh-audit dropbear-bin  # the SSH gateway tests: a pty driven through tmux, the algorithm
  # audit, a client with a small window (dropbear's dbclient)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# Package scripts must not start services (nginx, redis) on their own: tests start their own.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy"
  created_policy=1
fi
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
[ $created_policy -eq 1 ] && $sudo rm -f "$policy"
exit 0
