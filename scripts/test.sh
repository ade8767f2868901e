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
# Every edgegate the tests start leaves a copy of its logs here; secret_grep.py then looks for
# every secret of the test fixtures in them.
logs=$(mktemp -d /tmp/edgegate-test-logs.XXXXXX)
trap 'rm -rf "$logs"' EXIT
echo "== tests (release)"
EDGEGATE_LOG_ARCHIVE=$logs/release ctest --test-dir build --output-on-failure --timeout 900 -j "$jobs"
echo "== secret grep of the logs (release)"
python3 tests/support/secret_grep.py "$logs/release"

if [ $quick -eq 0 ]; then
  echo "== sanitizer build (ASan + UBSan)"
  BUILD_DIR=build-asan BUILD_TYPE=Debug scripts/build.sh -DEDGE_SANITIZE=ON
  echo "== tests (ASan + UBSan)"
  # ASan keeps freed memory in quarantine: the flat-memory check gets a larger bound there.
  EDGEGATE_TEST_MAX_RSS_MIB=512 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 EDGEGATE_LOG_ARCHIVE=$logs/asan \
    ctest --test-dir build-asan --output-on-failure --timeout 900 -j "$jobs"
  echo "== secret grep of the logs (ASan + UBSan)"
  python3 tests/support/secret_grep.py "$logs/asan"
fi
