"""resample_ref.py OUT: PIL's resampling on generated images, the reference test_resample.c
compares the runtime's (transform.c's rt_resample_box) with, byte for byte: RandomResizedCrop
given its box (torchvision on PIL: crop(box).resize(size, BICUBIC), then the flip), timm's eval
transform (Resize(int(crop / 0.875)) bilinear on the shorter side, CenterCrop) and pack's
bilinear resize. The runtime does Pillow's classic order of the two passes (horizontal, then
vertical, as Resample.c's ImagingResampleInner does); Pillow 13.0 (the venv's) does the vertical
pass first for some shapes, which changes the rounding between the passes, so the reference
makes each pass a call of its own (a resize along one axis is that pass alone) and reports how
far the one-call resize is.
Format (little-endian): b"RSREF1\\n", int32 cases; per case int32 kind (0 crop, 1 eval, 2
resize), w, h, a, b, c, d, e, f (crop: x, y, box w, box h, the output side, flip; eval: crop;
resize: ow, oh), the input HWC uint8, the output (CHW for 0 and 1, HWC for 2). Exits 77 (skip)
without numpy or PIL."""
import struct
import sys

try:
    import numpy as np
    from PIL import Image
except ImportError as e:  # the test skips, saying why
    print(f"resample_ref: {e}", file=sys.stderr)
    sys.exit(77)

BICUBIC = getattr(Image, "Resampling", Image).BICUBIC
BILINEAR = getattr(Image, "Resampling", Image).BILINEAR
FLIP = getattr(Image, "Transpose", Image).FLIP_LEFT_RIGHT
rng = np.random.default_rng(17)
cases = []
one_call = [0, 0]  # cases where Pillow's one-call resize differs from the two passes, its worst


def two_pass(im, size, resample):
    """im resized to size, the horizontal pass then the vertical, each a call of its own"""
    out = im.resize((size[0], im.size[1]), resample).resize(size, resample)
    d = np.abs(np.asarray(out, dtype=int) - np.asarray(im.resize(size, resample), dtype=int)).max()
    one_call[0] += d > 0
    one_call[1] = max(one_call[1], int(d))
    return out


def image(w, h):
    if rng.random() < 0.3:  # smooth: a gradient and a little noise
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 // max(w, 1), y * 255 // max(h, 1), (x + y) * 127 // max(w + h, 1)], -1)
        return np.clip(base + rng.integers(-8, 9, (h, w, 3)), 0, 255).astype(np.uint8)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


for i in range(120):  # RandomResizedCrop given the box
    w, h = (int(v) for v in rng.integers(1, 130, 2))
    size = int(rng.choice([1, 7, 16, 24, 32, 48]))
    bw, bh = int(rng.integers(1, w + 1)), int(rng.integers(1, h + 1))
    if i % 6 == 0 and w >= size and h >= size:  # a box of the output's size: no pass at all
        bw = bh = size
    if i % 6 == 1 and w >= size:  # the horizontal pass skipped
        bw = size
    x, y = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
    flip = int(rng.integers(0, 2))
    img = image(w, h)
    out = two_pass(Image.fromarray(img).crop((x, y, x + bw, y + bh)), (size, size), BICUBIC)
    if flip:
        out = out.transpose(FLIP)
    cases.append((0, w, h, (x, y, bw, bh, size, flip), img, np.asarray(out).transpose(2, 0, 1)))
for i in range(60):  # timm's eval transform
    crop = int(rng.choice([7, 16, 24, 32]))
    scale = int(crop / 0.875)
    w, h = (int(v) for v in rng.integers(crop, 140, 2))
    if i % 5 == 0:
        w = scale  # the shorter side already at scale: one pass skipped
    img = image(w, h)
    if w <= h:
        ow, oh = scale, int(scale * h / w)
    else:
        ow, oh = int(scale * w / h), scale
    left, top = int(round((ow - crop) / 2.0)), int(round((oh - crop) / 2.0))
    out = two_pass(Image.fromarray(img), (ow, oh), BILINEAR).crop((left, top, left + crop, top + crop))
    cases.append((1, w, h, (crop, 0, 0, 0, 0, 0), img, np.asarray(out).transpose(2, 0, 1)))
for i in range(40):  # pack's bilinear resize
    w, h = (int(v) for v in rng.integers(1, 150, 2))
    ow, oh = (int(v) for v in rng.integers(1, 90, 2))
    img = image(w, h)
    cases.append((2, w, h, (ow, oh, 0, 0, 0, 0), img, np.asarray(two_pass(Image.fromarray(img), (ow, oh), BILINEAR))))

with open(sys.argv[1], "wb") as f:
    f.write(b"RSREF1\n" + struct.pack("<i", len(cases)))
    for kind, w, h, p, img, out in cases:
        f.write(struct.pack("<9i", kind, w, h, *p))
        f.write(np.ascontiguousarray(img).tobytes())
        f.write(np.ascontiguousarray(out, dtype=np.uint8).tobytes())
print(f"resample_ref: {len(cases)} cases; Pillow {Image.__version__}'s one-call resize differs from the two "
      f"passes in {one_call[0]} (by at most {one_call[1]})", file=sys.stderr)
