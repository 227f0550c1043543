#!/usr/bin/env bash
# fuzz.sh: builds the libFuzzer targets with clang (YAML frontend, ONNX reader, safetensors
# reader) and runs each for a bounded time (20 s) from its seed corpus (what CI runs).
#
# fuzz.sh --long [SECONDS]: a deeper campaign, SECONDS per target (default 600), one target
# after another. The corpus of each target is kept in build-fuzz/corpus/TARGET (it grows from
# run to run) and seeded with the committed seeds plus the hostile inputs of issue 15 made by
# tests/fuzz/make_hostile_seeds.py (deep YAML, 5 million empty ONNX initializers, external
# data of huge dims, NaN weights, 200,000 safetensors tensors, ...); the full-size ones are
# first run once each, then the small ones are mutated. Prints per target: executions,
# coverage (edges, features), corpus size and the crashes, leaks, timeouts and OOMs found
# (saved under build-fuzz/artifacts/TARGET). Exits non-zero if any was found.
set -euo pipefail
cd "$(dirname "$0")/.."
long=0
secs=600
if [ "${1:-}" = "--long" ]; then
  long=1
  secs=${2:-600}
  case $secs in ''|*[!0-9]*) echo "fuzz.sh: --long takes a number of seconds, not '$secs'" >&2; exit 2 ;; esac
elif [ $# -gt 0 ]; then
  echo "usage: scripts/fuzz.sh [--long [SECONDS]]" >&2
  exit 2
fi
scripts/deps.sh
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DDEITC_FUZZ=ON > /dev/null
cmake --build build-fuzz -j"$(nproc)" --target fuzz_yaml fuzz_safetensors $(grep -q "fuzz_onnx " tests/onnx.cmake && echo fuzz_onnx)
if [ $long = 0 ]; then
  cd build-fuzz
  ctest --output-on-failure --no-tests=error -R '^(yaml|onnx|safetensors)_fuzz$'
  exit
fi

root=$PWD
gen=$root/build-fuzz/hostile
rm -rf "$gen"
python3 tests/fuzz/make_hostile_seeds.py "$gen"
declare -A seeds=(
  [yaml]="models tests/data/bad_yaml tests/fuzz/seeds tests/frontend/micro.yaml"
  [onnx]="tests/data/onnx/bad tests/data/onnx/ops tests/data/onnx/small/deit_opset14.onnx tests/data/onnx/small/deit_opset18.onnx tests/data/onnx/small/deit_opset20_gelu.onnx tests/data/onnx/export/gelu_tanh/deit_opset13_static_nofold.onnx"
  [safetensors]="tests/data/deit_img24_h5_d1"
)
targets="yaml safetensors"
[ -x build-fuzz/tests/fuzz_onnx ] && targets="yaml onnx safetensors" # built only with the ONNX frontend
summary=()
found=0
for t in $targets; do
  bin=$root/build-fuzz/tests/fuzz_$t
  corpus=$root/build-fuzz/corpus/$t
  art=$root/build-fuzz/artifacts/$t
  seed=$(mktemp -d)
  mkdir -p "$corpus" "$art"
  for s in ${seeds[$t]}; do
    if [ -d "$s" ]; then find "$s" -maxdepth 1 -type f -exec cp {} "$seed/" \; ; else cp "$s" "$seed/"; fi
  done
  cp "$gen/$t/corpus/"* "$seed/"
  # the full-size defect inputs, once each (a hang is a timeout, a crash an artifact)
  echo "== fuzz_$t: the full-size hostile inputs"
  (cd "$art" && "$bin" -timeout=20 -rss_limit_mb=2048 "$gen/$t/regress/"*) > "$art/regress.log" 2>&1 ||
    { echo "fuzz_$t: a full-size hostile input failed; see $art/regress.log"; found=1; }
  echo "== fuzz_$t: $secs s from $(ls "$corpus" | wc -l) corpus + $(ls "$seed" | wc -l) seed inputs"
  log=$art/campaign.log
  set +e
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
         -artifact_prefix="$art/" "$corpus" "$seed" > "$log" 2>&1
  rc=$?
  set -e
  rm -rf "$seed"
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*' || echo "?")
  ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*' || echo "?")
  bad=$(find "$art" -maxdepth 1 \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
  [ "$rc" -ne 0 ] || [ "$bad" -ne 0 ] && found=1
  summary+=("fuzz_$t: ${secs} s, ${execs} executions, cov ${cov} edges, ft ${ft}, corpus $(ls "$corpus" | wc -l) files, ${bad} crashes/leaks/timeouts/OOMs (exit ${rc}; log ${log})")
done
printf '%s\n' "${summary[@]}"
exit $found
