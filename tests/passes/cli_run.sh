#!/bin/sh
# cli_run.sh: `deitc run` must fail cleanly, not abort, when memory is short: --steps N must
# not allocate N losses up front, and a graph too big for the interpreter is an error message.
# A --weights tensor the model does not use is warned about, not silently dropped.
# Without a sanitizer the address space is capped with ulimit -v (ASan needs a huge one).
set -u
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
M="$DEITC_SOURCE_DIR/tests/frontend/micro.yaml"
[ "${DEITC_SANITIZED:-0}" = 1 ] || ulimit -v 3000000
fail=0
# images [1,3,32,32] f32 zeros and labels [1] i64 = 99 (outside [0,10)): step 1 fails
H='{"images":{"dtype":"F32","shape":[1,3,32,32],"data_offsets":[0,12288]},"labels":{"dtype":"I64","shape":[1],"data_offsets":[12288,12296]}}'
{
  printf "\\$(printf %03o ${#H})\\000\\000\\000\\000\\000\\000\\000"
  printf '%s' "$H"
  head -c 12288 /dev/zero
  printf '\143\000\000\000\000\000\000\000'
} > "$T/in.safetensors"
"$DEITC_BIN" run "$M" --input "$T/in.safetensors" --steps 1000000000 -o "$T/o1.safetensors" 2> "$T/e1"
rc=$?
if [ $rc -ne 1 ] || ! grep -q "label 99 of sample 0" "$T/e1"; then
  echo "--steps 1e9: rc $rc, expected 1 and the label error:"; cat "$T/e1"; fail=1
fi
# 0.75e12 weights in qkv: passes the frontend's 2^40 limit, cannot be held as doubles
"$DEITC_BIN" run "$M" -D embed_dim=500000 -D mlp_ratio=0.0001 -D depth=1 \
  --input "$T/in.safetensors" -o "$T/o2.safetensors" 2> "$T/e2"
rc=$?
if [ $rc -ne 1 ] || ! grep -q "out of memory" "$T/e2"; then
  echo "huge model: rc $rc, expected 1 and 'out of memory':"; cat "$T/e2"; fail=1
fi
[ ! -e "$T/o1.safetensors" ] && [ ! -e "$T/o2.safetensors" ] || { echo "output written"; fail=1; }
# the oracle's weights plus one misspelt tensor: runs, and names it
W="$DEITC_TESTDATA/deit_micro/init.safetensors"
HL=$(od -An -tu4 -N4 "$W" | tr -d ' ')
HJ=$(dd if="$W" bs=1 skip=8 count="$HL" 2>/dev/null)
HX=$(printf '%s' "$HJ" | sed 's/^{/{"head.wieght":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},/')
{
  n=${#HX}
  printf "\\$(printf %03o $((n % 256)))\\$(printf %03o $((n / 256 % 256)))\\$(printf %03o $((n / 65536)))\\000\\000\\000\\000\\000"
  printf '%s' "$HX"
  tail -c +$((HL + 9)) "$W"
} > "$T/w.safetensors"
"$DEITC_BIN" run "$M" --weights "$T/w.safetensors" --input "$DEITC_TESTDATA/deit_micro/batch.safetensors" \
  -o "$T/o3.safetensors" 2> "$T/e3"
rc=$?
if [ $rc -ne 0 ] || ! grep -q "1 tensor is not a weight of the model, ignored (first: 'head.wieght')" "$T/e3"; then
  echo "unused weight: rc $rc, expected 0 and a warning naming it:"; cat "$T/e3"; fail=1
fi
exit $fail
