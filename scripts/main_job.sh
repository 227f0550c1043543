#!/usr/bin/env bash
# main_job.sh: the README's main job. Builds deitc, compiles models/deit_tiny.yaml into a training
# executable (cuda when a GPU is present, else the emu target, which runs the same kernels on the
# CPU), makes a small synthetic dataset and trains a few steps.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build build -j"$(nproc)"
out=out/main_job
mkdir -p "$out"
if command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1; then
  target=cuda; batch=64; steps=20
else
  target=emu; batch=8; steps=10
  echo "main job: no GPU found, using the emu target (the same CUDA C, run on the CPU)"
fi
build/deitc inspect models/deit_tiny.yaml
build/deitc compile models/deit_tiny.yaml --target "$target" --batch "$batch" -o "$out/deit_tiny"
"$out/deit_tiny" train --synthetic --steps "$steps" --lr 5e-4 --weight-decay 0.05 \
  --save "$out/deit_tiny_trained.safetensors" --metrics "$out/metrics.jsonl"
echo "main job: trained weights in $out/deit_tiny_trained.safetensors, metrics in $out/metrics.jsonl"
