#!/bin/sh
# timm_files.sh DEITC ST_COMPARE DIR: the files around the timm exports of DIR
# (tests/data/onnx/timm, made by export_timm.py), checked without torch:
#  - `deitc run --steps` writes exactly timm's state_dict (every name of init.safetensors, and
#    nothing else: no losses, no ONNX initializer names) and prints the losses, with no note
#    (every weight named); the dynamo exports' IR has no more nodes than the legacy export's;
#  - a state_dict under 'module.' loads, the prefix named;
#  - timm weights without the head: an error naming --partial-init; with it, the model's own
#    head and timm's other weights (logits within 1e-4 of PyTorch's), named a new head;
#  - a graph that is no ViT keeps its initializer names, listed once in a note.
set -u
D=$1 ST=$2 T=$3
W=$(mktemp -d) || exit 1
trap 'rm -rf "$W"' EXIT
fail=0
nl=
for f in legacy17 dynamo noopt opset23; do
  if ! "$D" run "$T/$f.onnx" --input "$T/batch.safetensors" --steps 1 -o "$W/$f.safetensors" >"$W/$f.log" 2>&1; then
    echo "$f: deitc run --steps 1 failed:"; cat "$W/$f.log"; fail=1; continue
  fi
  grep -q '^step 1: loss ' "$W/$f.log" || { echo "$f: the loss is not printed"; cat "$W/$f.log"; fail=1; }
  if grep -q 'note' "$W/$f.log"; then echo "$f: a weight was not named:"; cat "$W/$f.log"; fail=1; fi
  if ! "$ST" "$W/$f.safetensors" "$T/init.safetensors" 1e30 >"$W/c1" || ! "$ST" "$T/init.safetensors" "$W/$f.safetensors" 1e30 >"$W/c2"; then
    echo "$f: the weights file's names are not timm's state_dict:"; grep MISSING "$W/c1" "$W/c2"; fail=1
  fi
  n=$("$D" inspect "$T/$f.onnx" | sed -n 's/^nodes: //p')
  echo "$f: $n IR nodes, weights named as timm names them"
  [ -n "$nl" ] || nl=$n
  [ "$n" -le "$nl" ] || { echo "$f: more IR nodes ($n) than the legacy export ($nl)"; fail=1; }
done
"$D" run "$T/dynamo.onnx" --weights "$T/timm_module.safetensors" --input "$T/batch.safetensors" -o "$W/m.safetensors" 2>"$W/m.log" &&
  grep -q "every tensor is named under 'module.'" "$W/m.log" || { echo "module. prefix:"; cat "$W/m.log"; fail=1; }
if "$D" run "$T/legacy17.onnx" --weights "$T/timm_nohead.safetensors" --input "$T/batch.safetensors" -o "$W/h.safetensors" 2>"$W/h.log" ||
   ! grep -q "the classifier head is not in the file.*'head.weight', 'head.bias'.*pass --partial-init" "$W/h.log"; then
  echo "headless file without --partial-init:"; cat "$W/h.log"; fail=1
fi
if ! "$D" run "$T/legacy17.onnx" --weights "$T/timm_nohead.safetensors" --partial-init --input "$T/batch.safetensors" -o "$W/h.safetensors" 2>"$W/h.log" ||
   ! grep -q "2 of the model's 32 weights are not in the file and keep the model's own values (a new classifier head" "$W/h.log" ||
   ! "$ST" "$W/h.safetensors" "$T/timm_nohead_expected.safetensors" 1e-4 logits; then
  echo "headless file with --partial-init:"; cat "$W/h.log"; fail=1
fi
"$D" inspect "$T/../bad/tiny_ok.onnx" >/dev/null 2>"$W/n.log"
if [ "$(grep -c "2 weights keep the ONNX file's names (the graph is not recognized as a timm ViT/DeiT): 'w', 'b'" "$W/n.log")" != 1 ]; then
  echo "unnamed weights note:"; cat "$W/n.log"; fail=1
fi
exit $fail
