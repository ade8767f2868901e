#!/usr/bin/env bash
# Configures and builds edgegate into build/ (the server ends up at build/edgegate).
# Extra arguments go to CMake, e.g. scripts/build.sh -DEDGE_SANITIZE=ON with BUILD_DIR=build-asan.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${BUILD_DIR:-build}
# ccache keys on the compiler's command line, which holds absolute include paths: relative to
# the checkout, two clones of the project share the cache.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} "$@"
elif [ $# -gt 0 ]; then
  cmake -S . -B "$build_dir" "$@"
fi
cmake --build "$build_dir" --parallel "$(nproc)"
