#!/bin/sh
# install_relocated.sh BUILD DATA: `cmake --install BUILD` into a staging prefix, the prefix
# moved elsewhere, and the moved deitc: its --version names the moved runtime and models
# folders, a model resolves by name, and an emu executable compiled from the moved install
# (its headers and bundled libraries) trains a step on DATA/deit_micro to the oracle's loss.
set -eu
build=$1 data=$2
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
unset DEITC_RUNTIME_DIR DEITC_RUNTIME_LIB DEITC_MODELS_DIR
cmake --install "$build" --prefix "$d/staged" > "$d/install.log"
mv "$d/staged" "$d/moved"
deitc=$d/moved/bin/deitc
"$deitc" --version > "$d/version.txt"
grep -qx "runtime: $d/moved/lib/deitc/runtime (installed prefix)" "$d/version.txt"
grep -qx "models: $d/moved/share/deitc/models (installed prefix)" "$d/version.txt"
"$deitc" inspect deit_tiny | grep -qx "parameters: 5717416"
cd "$d"
"$deitc" compile deit_tiny -D img_size=32 -D patch_size=8 -D depth=2 -D num_classes=10 -D embed_dim=64 \
  -D num_heads=2 --batch 4 --target emu -o micro > compile.txt
./micro train --init "$data/deit_micro/init.safetensors" --data "$data/deit_micro/batch.safetensors" \
  --steps 1 --no-shuffle --metrics m.jsonl > train.txt
grep -q '"loss":2.3123' m.jsonl   # the oracle's loss: 2.3123243 (tests/data/deit_micro/expected.safetensors)
echo "install relocated ok"
