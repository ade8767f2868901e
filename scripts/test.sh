#!/usr/bin/env bash
# Sets up and runs the whole test suite: unit and integration tests on a release build, then the
# same tests on an AddressSanitizer + UndefinedBehaviorSanitizer build.
#   scripts/test.sh            everything
#   scripts/test.sh --quick    skip the sanitizer build
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1

scripts/install-deps.sh
jobs=$(nproc)

echo "== release build"
BUILD_DIR=build scripts/build.sh
echo "== tests (release)"
ctest --test-dir build --output-on-failure --timeout 900 -j "$jobs"

if [ $quick -eq 0 ]; then
  echo "== sanitizer build (ASan + UBSan)"
  BUILD_DIR=build-asan BUILD_TYPE=Debug scripts/build.sh -DEDGE_SANITIZE=ON
  echo "== tests (ASan + UBSan)"
  # ASan keeps freed memory in quarantine: the flat-memory check gets a larger bound there.
  EDGEGATE_TEST_MAX_RSS_MIB=512 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-asan --output-on-failure --timeout 900 -j "$jobs"
fi
