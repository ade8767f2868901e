#!/usr/bin/env bash
# Sets up and runs edgegate. With DAYTONA_API_URL and PROXY_API_KEY in the environment it serves
# that Daytona region; without them it starts the local demo control plane, runner and app.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh >/dev/null
if [ -n "${DAYTONA_API_URL:-${API_URL:-}}" ] && [ -n "${PROXY_API_KEY:-}" ]; then
  exec build/edgegate "$@"
fi
exec python3 scripts/demo.py "$@"
