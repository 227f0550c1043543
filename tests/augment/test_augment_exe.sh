#!/bin/sh
# augment_exe: --aug randaug and --aug deit through an emu executable (env from ctest: DEITC_BIN,
# DEITC_SOURCE_DIR, DEITC_TESTDATA): any worker count gives the same weights, a resumed run the
# same weights as a straight one, and each differs from --aug light's.
set -e
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
data="$DEITC_TESTDATA/image_folder/train"
fail() { echo "augment_exe: FAILED: $*" >&2; exit 1; }
"$DEITC_BIN" compile "$DEITC_SOURCE_DIR/models/deit_tiny.yaml" -D img_size=32 -D patch_size=8 -D embed_dim=32 \
  -D depth=1 -D num_heads=2 -D num_classes=3 --target emu --batch 4 -o "$d/exe" > "$d/compile.txt" 2>&1 ||
  fail "deitc compile (see compile.txt)"
cd "$d"
./exe train --data "$data" --steps 6 --aug light --workers 2 --save light.st > /dev/null
for aug in randaug deit; do
  ./exe train --data "$data" --steps 6 --aug $aug --workers 1 --save ${aug}1.st > ${aug}1.txt
  grep -q "(--aug $aug" ${aug}1.txt || fail "--aug $aug: not in the data line"
  ./exe train --data "$data" --steps 6 --aug $aug --workers 3 --save ${aug}3.st > /dev/null
  cmp ${aug}1.st ${aug}3.st || fail "--aug $aug: 1 and 3 workers give other weights"
  cmp -s ${aug}1.st light.st && fail "--aug $aug trained exactly as --aug light"
  ./exe train --data "$data" --steps 2 --aug $aug --workers 2 --checkpoint c$aug.st > /dev/null
  ./exe train --data "$data" --steps 6 --aug $aug --workers 2 --resume c$aug.st --resume-override \
    --save r$aug.st > r$aug.txt 2>&1 || fail "--aug $aug: resume (see r$aug.txt)"
  cmp ${aug}1.st r$aug.st || fail "--aug $aug: the resumed run's weights differ"
  echo "aug $aug: workers 1 == 3, resumed == straight, != light"
done
cmp -s randaug1.st deit1.st && fail "--aug deit trained exactly as --aug randaug (no erasing?)"
if ./exe train --data "$data" --steps 1 --aug bogus > bad.txt 2>&1; then fail "--aug bogus accepted"; fi
grep -q "expects none, light, randaug or deit" bad.txt || fail "--aug bogus: $(cat bad.txt)"
echo "augment_exe ok"
