#!/bin/sh
# loader_exe: the streaming loader and .dpk files through an emu executable (env from ctest:
# DEITC_BIN, DEITC_SOURCE_DIR, DEITC_TESTDATA). Each step prints what it checks; any failure
# exits non-zero naming it.
set -e
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
data="$DEITC_TESTDATA/image_folder/train"
fail() { echo "loader_exe: FAILED: $*" >&2; exit 1; }
"$DEITC_BIN" compile "$DEITC_SOURCE_DIR/models/deit_tiny.yaml" -D img_size=32 -D patch_size=8 -D embed_dim=32 \
  -D depth=1 -D num_heads=2 -D num_classes=3 --target emu --batch 4 -o "$d/exe" > "$d/compile.txt" 2>&1 ||
  fail "deitc compile (see compile.txt)"
cd "$d"
# aug none: decoded once (the folder fits the cache) == streamed with 1 or 3 workers
./exe train --data "$data" --steps 7 --save once.st > once.txt
grep -q "decoded in" once.txt || fail "the small folder was not decoded once"
./exe train --data "$data" --steps 7 --stream --workers 1 --save s1.st > s1.txt
grep -q "streamed by 1 workers (--aug none, uint8 batches normalized on the device)" s1.txt || fail "--stream did not stream"
DEITC_HOST_DATA=1 ./exe train --data "$data" --steps 7 --stream --workers 1 --save h1.st > h1.txt
grep -q "streamed by 1 workers (--aug none, normalized by the workers)" h1.txt || fail "DEITC_HOST_DATA=1: not the host path"
DEITC_HOST_DATA=1 ./exe train --data "$data" --steps 7 --save h0.st > /dev/null
cmp once.st h0.st || fail "normalized on the device: other weights than the host-normalized run's"
cmp once.st h1.st || fail "normalized by the workers: other weights than the device-normalized run's"
DEITC_DATA_CACHE_MB=0 ./exe train --data "$data" --steps 7 --workers 3 --save s3.st > s3.txt
grep -q "streamed by 3 workers" s3.txt || fail "DEITC_DATA_CACHE_MB=0 did not stream"
cmp once.st s1.st || fail "streamed (1 worker) weights differ from the decoded-once run's"
cmp once.st s3.st || fail "streamed (3 workers) weights differ from the decoded-once run's"
echo "streamed == decoded once, 1 and 3 workers; normalized on the device == on the host"
# no host synchronization inside a step that prints no line (DEITC_TRACE_SYNC=1: each step's count)
DEITC_TRACE_SYNC=1 ./exe train --data "$data" --steps 9 --log-every 4 --stream --workers 2 --save t.st 2> trace.txt > /dev/null
grep "sync-trace" trace.txt | grep -v "(its line)" | grep -qv ": 0 host synchronizations$" && fail "a step without a line synchronized (trace.txt)"
[ "$(grep -c ': 0 host synchronizations$' trace.txt)" = 5 ] || fail "steps 2, 3, 5, 6, 7 are not the 5 without a sync (trace.txt)"
[ "$(grep -c '(its line)' trace.txt)" = 4 ] || fail "steps 1, 4, 8, 9 are not the 4 that read the loss (trace.txt)"
DEITC_HOST_DATA=1 DEITC_TRACE_SYNC=1 ./exe train --data "$data" --steps 9 --log-every 4 --save ht.st 2> htrace.txt > /dev/null
grep -q ': 0 host synchronizations$' htrace.txt && fail "the host path's blocking uploads were not counted (htrace.txt)"
DEITC_TRACE_SYNC=1 ./exe train --data "$data" --steps 9 --log-every 4 --save dt.st 2> /dev/null > /dev/null
cmp dt.st ht.st || fail "9 steps read a step late: other weights than the host path's"
echo "no host synchronization in steps without a line; the host path counts its syncs"
# aug light: any worker count, the same weights; a resumed run byte-identical
./exe train --data "$data" --steps 8 --aug light --workers 1 --save l1.st > /dev/null
./exe train --data "$data" --steps 8 --aug light --workers 4 --save l4.st > /dev/null
cmp l1.st l4.st || fail "--aug light: 1 and 4 workers give other weights"
cmp -s l1.st once.st && fail "--aug light trained exactly as --aug none"
./exe train --data "$data" --steps 3 --aug light --workers 2 --checkpoint c.st > /dev/null
./exe train --data "$data" --steps 8 --aug light --workers 3 --resume c.st --resume-override --save r.st > r.txt 2>&1
grep -q "resuming from c.st at step 3" r.txt || fail "no resume"
cmp l1.st r.st || fail "--aug light: the resumed run's weights differ"
if ./exe train --data "$data" --steps 3 --resume c.st --save x.st 2> aug.txt; then fail "resumed with another --aug"; fi
grep -q "aug none (the checkpoint's run: light)" aug.txt || fail "--aug is not one of the checkpoint's run options (aug.txt)"
echo "aug light: workers 1 == 4, resumed == straight"
# a corrupt image in a streamed folder: exit 1 naming it
mkdir -p bad/a
for i in 1 2 3 4 5 6 7; do cp "$data/cat/a_rgb.jpg" "bad/a/$i.jpg"; done
head -c 300 "$data/cat/a_rgb.jpg" > bad/a/8.jpg
if ./exe train --data bad --steps 4 --aug light --no-shuffle > bad.txt 2>&1; then fail "a corrupt image was trained on"; fi
grep -q "bad/a/8.jpg: corrupt or truncated JPEG" bad.txt || fail "the corrupt image is not named (bad.txt)"
echo "corrupt image named"
# pack: raw and JPEG; train and eval on them; bad files refused
./exe pack "$data" -o raw.dpk --max-side 36 --raw > pack.txt || fail "pack --raw"
./exe pack "$data" -o jpg.dpk --max-side 64 --jpeg-quality 85 --workers 2 > /dev/null || fail "pack JPEG"
./exe eval --data raw.dpk --init once.st > e1.txt && ./exe eval --data "$data" --init once.st > e2.txt
grep -q "eval: 12 images" e1.txt || fail "eval on raw.dpk"
[ "$(grep accuracy e1.txt | head -1)" = "$(grep accuracy e2.txt | head -1)" ] || fail "eval: raw.dpk and the folder differ"
# raw .dpk + --aug light: the device crops, flips and normalizes (dc_data_crop) the same bytes
./exe train --data raw.dpk --steps 6 --aug light --workers 1 --save rd1.st > rd.txt || fail "train on raw.dpk"
grep -q "raw samples cropped, flipped and normalized on the device" rd.txt || fail "raw.dpk was not cropped on the device (rd.txt)"
./exe train --data raw.dpk --steps 6 --aug light --workers 3 --save rd3.st > /dev/null
DEITC_HOST_DATA=1 ./exe train --data raw.dpk --steps 6 --aug light --workers 2 --save rh.st > rh.txt
grep -q "raw samples cropped" rh.txt && fail "DEITC_HOST_DATA=1 still cropped on the device"
cmp rd1.st rd3.st || fail "raw.dpk cropped on the device: 1 and 3 workers give other weights"
cmp rd1.st rh.st || fail "raw.dpk: the device's crops trained other weights than the host transform's"
./exe train --data raw.dpk --steps 3 --aug light --checkpoint rc.st > /dev/null
./exe train --data raw.dpk --steps 6 --aug light --resume rc.st --resume-override --save rr.st > /dev/null 2>&1
cmp rd1.st rr.st || fail "raw.dpk cropped on the device: the resumed run's weights differ"
echo "raw.dpk: the device's crop == the host transform's, any workers, resumed"
./exe train --data jpg.dpk --steps 6 --aug light --workers 1 --save j1.st > j.txt || fail "train on jpg.dpk"
./exe train --data jpg.dpk --steps 6 --aug light --workers 3 --save j3.st > /dev/null
cmp j1.st j3.st || fail ".dpk: 1 and 3 workers give other weights"
head -c 2000 raw.dpk > cut.dpk
if ./exe train --data cut.dpk --steps 1 > cut.txt 2>&1; then fail "a truncated .dpk was accepted"; fi
grep -q "cut.dpk: no .dpk trailer" cut.txt || fail "truncated .dpk message (cut.txt)"
if ./exe pack "$data" -o x.dpk --raw --jpeg-quality 80 2> both.txt; then fail "--raw with --jpeg-quality"; fi
grep -q "exclude each other" both.txt || fail "--raw --jpeg-quality message"
if ./exe pack bad -o bad.dpk > /dev/null 2> packbad.txt; then fail "packed a corrupt folder"; fi
grep -q "bad/a/8.jpg" packbad.txt || fail "pack: the corrupt image is not named"
ls | grep -q "bad.dpk" && fail "a failed pack left a file"
echo "pack, train/eval on .dpk, bad .dpk refused"
# bench --data: the data path in the timed steps; other data refused
./exe bench --steps 3 --warmup 1 --data jpg.dpk --aug light --workers 2 > bench.txt || fail "bench --data"
grep -q "with the data path" bench.txt || fail "bench --data did not time the data path (bench.txt)"
grep -q "host synchronizations: 1.00 a step" bench.txt || fail "bench --data: more than the timer's sync a step (bench.txt)"
if ./exe bench --steps 1 --data once.st 2> benchbad.txt; then fail "bench --data took a weights file"; fi
grep -q "bench measures streamed data" benchbad.txt || fail "bench --data message"
echo "bench --data"
echo "loader_exe ok"
