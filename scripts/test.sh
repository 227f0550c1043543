#!/usr/bin/env bash
# test.sh: builds deitc and runs every test (ctest). With --sanitize, builds a separate tree
# under AddressSanitizer + UBSan and runs the tests there, less those labelled nosan (Python-side
# checks of gpu_check around executables other tests already run under the sanitizers), so
# that CI (.ci/run) stays well under 45 minutes on 2 cores. DEITC_CTEST_ARGS adds ctest options.
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
label_args=()
[ "$build" = build-asan ] && label_args=(-LE nosan)
ctest --output-on-failure -j"$(nproc)" "${label_args[@]}" ${DEITC_CTEST_ARGS:-}
