#!/usr/bin/env bash
# test.sh: builds deitc and runs every test (ctest). With --sanitize, builds a separate tree
# under AddressSanitizer + UBSan and runs the tests there.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
build=build
flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [ "${1:-}" = "--sanitize" ]; then
  build=build-asan
  flags=(-DCMAKE_BUILD_TYPE=Debug -DDEITC_SANITIZE=ON)
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
fi
cmake -S . -B "$build" "${flags[@]}" > /dev/null
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest --output-on-failure -j"$(nproc)" ${DEITC_CTEST_ARGS:-}
