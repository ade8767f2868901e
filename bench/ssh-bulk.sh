#!/usr/bin/env bash
# SSH gateway: 1 GiB through edgegate vs directly to the same sshd, same cipher (aes128-gcm and
# chacha20-poly1305), both directions; CPU seconds per GiB; connection setup time. Needs root
# (the sandbox's user for sshd, see docs/ssh.md#tests). Options: see bench/ssh_bulk.py --help.
#   EDGEGATE_BIN=build/edgegate bench/ssh-bulk.sh [--size-mib 1024] [--rounds 3] [--setup-runs 20]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export EDGEGATE_BIN=${EDGEGATE_BIN:-$root/build/edgegate}
exec python3 "$root/bench/ssh_bulk.py" "$@"
