#!/usr/bin/env bash
# fuzz.sh: builds the libFuzzer targets with clang (YAML frontend, ONNX reader, safetensors
# reader) and runs each for a bounded time (20 s) from its seed corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DDEITC_FUZZ=ON > /dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz_yaml fuzz_safetensors $(grep -q "fuzz_onnx " tests/onnx.cmake && echo fuzz_onnx)
cd build-fuzz
ctest --output-on-failure --no-tests=error -R '^(yaml|onnx|safetensors)_fuzz$'
