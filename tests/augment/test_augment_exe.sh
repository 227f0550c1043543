#!/bin/sh
# augment_exe: --aug randaug and --aug deit through an emu executable (env from ctest: DEITC_BIN,
# DEITC_SOURCE_DIR, DEITC_TESTDATA): any worker count gives the same weights, a resumed run the
# same weights as a straight one, and each differs from --aug light's; --rand-augment and
# --reprob as the presets' parts (equal to the preset they spell, refused when bad).
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
# the preset's parts on their own: --reprob 0 is no erasing, --rand-augment the preset's spec
# is the preset, none of both is --aug light; another spec changes the weights
./exe train --data "$data" --steps 6 --aug deit --reprob 0 --workers 2 --save rp0.st > rp0.txt
grep -q "(--aug deit with --rand-augment as the preset, --reprob 0" rp0.txt || fail "--reprob 0: $(cat rp0.txt)"
cmp rp0.st randaug1.st || fail "--aug deit --reprob 0 differs from --aug randaug (no erasing)"
./exe train --data "$data" --steps 6 --aug light --rand-augment rand-m9-mstd0.5-inc1 --workers 2 --save ra.st > /dev/null
cmp ra.st randaug1.st || fail "--aug light --rand-augment rand-m9-mstd0.5-inc1 differs from --aug randaug"
./exe train --data "$data" --steps 6 --aug deit --rand-augment none --reprob 0 --workers 2 --save plain.st > /dev/null
cmp plain.st light.st || fail "--aug deit --rand-augment none --reprob 0 differs from --aug light"
./exe train --data "$data" --steps 6 --aug randaug --rand-augment rand-m5-n1-inc1 --workers 2 --save m5.st > /dev/null
cmp -s m5.st randaug1.st && fail "--rand-augment rand-m5-n1-inc1 trained exactly as rand-m9-mstd0.5-inc1"
./exe train --data "$data" --steps 6 --aug deit --reprob 1 --workers 2 --save rp1.st > /dev/null
cmp -s rp1.st deit1.st && fail "--reprob 1 trained exactly as --reprob 0.25"
echo "parts: --reprob 0 == randaug, --rand-augment preset == randaug, none + 0 == light, others differ"
# refused with a message: bad specs, a bad probability, parts without a training transform,
# a resume with another --reprob than the checkpoint's run
refused() { # a failed run, and the message ($msg) in its output
  if ./exe train --data "$data" "$@" > bad.txt 2>&1; then fail "$* accepted"; fi
  grep -q -- "$msg" bad.txt || fail "$*: $(cat bad.txt)"
}
msg="bogus9: expected rand-m<M>" refused --steps 1 --aug deit --rand-augment bogus9
msg="section 'm12' unknown or out of range" refused --steps 1 --aug deit --rand-augment rand-m12-inc1
msg="only timm's increasing op set (inc1)" refused --steps 1 --aug deit --rand-augment rand-m9-mstd0.5
msg="--reprob expects a decimal number in \[0, 1\]" refused --steps 1 --aug deit --reprob 1.5
msg="--rand-augment is a part of the training transform" refused --steps 1 --rand-augment rand-m9-inc1
msg="--reprob is a part of the training transform" refused --steps 1 --aug none --reprob 0.5
msg="reprob 0.5 (the checkpoint's run: --aug's)" refused --aug deit --reprob 0.5 --steps 6 --resume cdeit.st
echo "augment_exe ok"
