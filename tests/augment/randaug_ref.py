"""randaug_ref.py OUT: timm's RandAugment ops (timm.data.auto_augment.AugmentOp, the increasing
op set, DeiT's hparams: BICUBIC, img_mean fill) on a generated image at fixed magnitudes and
signs, written for test_augment.c. Format (little-endian): b"RAREF1\\n", int32 w, h, cases; the
input HWC uint8; per case int32 op index, float64 magnitude, int32 negate, the output HWC.
Exits 77 (skip) without numpy/PIL/timm."""
import struct
import sys

try:
    import numpy as np
    from PIL import Image
    import importlib.util
    import os

    # timm's auto_augment.py alone (numpy + PIL), without importing timm (and torch)
    _timm = importlib.util.find_spec("timm")
    if _timm is None:
        raise ImportError("No module named 'timm'")
    _spec = importlib.util.spec_from_file_location(
        "timm_auto_augment", os.path.join(os.path.dirname(_timm.origin), "data", "auto_augment.py"))
    aa = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(aa)
except ImportError as e:  # the test skips, saying why
    print(f"randaug_ref: {e}", file=sys.stderr)
    sys.exit(77)

OPS = ["AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
       "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing",
       "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"]


class FixedRandom:  # _randomly_negate negates when random() > 0.5
    def __init__(self, v):
        self.v = v

    def random(self):
        return self.v

    def choice(self, seq):
        return seq[0]


def main():
    w, h = 40, 28
    rng = np.random.RandomState(3)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 255 // (w - 1)), (yy * 200 // (h - 1)) + 20, (xx + yy) * 3 % 256], -1).astype(np.int32)
    img = np.clip(img + rng.randint(-40, 41, img.shape), 0, 255).astype(np.uint8)
    # a low-contrast block so that AutoContrast/Equalize have work to do in each channel
    img[:, :8] = (img[:, :8] // 4 + 60).astype(np.uint8)
    hp = dict(translate_const=int(224 * 0.45), img_mean=(124, 116, 104), interpolation=Image.BICUBIC)
    cases = []
    for op_i, name in enumerate(OPS):
        for mag in (9.0, 4.3, 10.0, 0.0):
            if name == "PosterizeIncreasing" and mag == 10.0:
                continue  # 0 bits: Pillow >= 11 refuses, older ones (and randaug.c) give zeros
            for neg in (0, 1):
                aa.random = FixedRandom(0.9 if neg else 0.1)
                op = aa.AugmentOp(name, prob=1.0, magnitude=mag, hparams=hp)
                out = np.asarray(op(Image.fromarray(img, "RGB")).convert("RGB"), dtype=np.uint8)
                cases.append((op_i, mag, neg, out))
    with open(sys.argv[1], "wb") as f:
        f.write(b"RAREF1\n")
        f.write(struct.pack("<3i", w, h, len(cases)))
        f.write(img.tobytes())
        for op_i, mag, neg, out in cases:
            f.write(struct.pack("<idi", op_i, mag, neg))
            f.write(out.tobytes())


main()
