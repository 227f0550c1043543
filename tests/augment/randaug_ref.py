"""randaug_ref.py OUT: timm's RandAugment ops (timm.data.auto_augment.AugmentOp, the increasing
op set, DeiT's hparams: BICUBIC, img_mean fill) on a generated image at fixed magnitudes and
signs, written for test_augment.c. Format (little-endian): b"RAREF1\\n", int32 w, h, cases; the
input HWC uint8; per case int32 op index, float64 magnitude, int32 negate, the output HWC.
Without timm, the same ops through PIL with timm's mappings restated (pil_only_op); exits 77
(skip) without numpy or PIL."""
import struct
import sys

try:
    import numpy as np
    from PIL import Image, ImageEnhance, ImageOps
except ImportError as e:  # the test skips, saying why
    print(f"randaug_ref: {e}", file=sys.stderr)
    sys.exit(77)
try:
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
except ImportError:
    aa = None  # PIL only (Debian's python3-pil): timm's level mappings and op calls restated below
    print("randaug_ref: no timm: PIL's ops with timm's magnitude mappings restated here", file=sys.stderr)


def pil_only_op(name, mag, neg, img, fill):
    """timm 1.x's LEVEL_TO_ARG / NAME_TO_OP for the increasing set, for a python without timm."""
    lv, sg = mag / 10.0, (-1.0 if neg else 1.0)
    kw = dict(resample=Image.BICUBIC, fillcolor=fill)
    enh = max(0.1, 1.0 + sg * lv * 0.9)
    if name == "AutoContrast": return ImageOps.autocontrast(img)
    if name == "Equalize": return ImageOps.equalize(img)
    if name == "Invert": return ImageOps.invert(img)
    if name == "Rotate": return img.rotate(sg * lv * 30.0, **kw)
    if name == "PosterizeIncreasing":
        bits = 4 - int(lv * 4)
        return img if bits >= 8 else ImageOps.posterize(img, bits)
    if name == "SolarizeIncreasing": return ImageOps.solarize(img, 256 - min(256, int(lv * 256)))
    if name == "SolarizeAdd":
        add = min(128, int(lv * 110))
        return img.point([min(255, i + add) if i < 128 else i for i in range(256)] * 3)
    if name == "ColorIncreasing": return ImageEnhance.Color(img).enhance(enh)
    if name == "ContrastIncreasing": return ImageEnhance.Contrast(img).enhance(enh)
    if name == "BrightnessIncreasing": return ImageEnhance.Brightness(img).enhance(enh)
    if name == "SharpnessIncreasing": return ImageEnhance.Sharpness(img).enhance(enh)
    f = sg * lv * 0.3
    if name == "ShearX": return img.transform(img.size, Image.AFFINE, (1, f, 0, 0, 1, 0), **kw)
    if name == "ShearY": return img.transform(img.size, Image.AFFINE, (1, 0, 0, f, 1, 0), **kw)
    t = sg * lv * 0.45
    if name == "TranslateXRel": return img.transform(img.size, Image.AFFINE, (1, 0, t * img.size[0], 0, 1, 0), **kw)
    if name == "TranslateYRel": return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, t * img.size[1]), **kw)
    raise ValueError(name)


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
                continue  # 0 bits: recent Pillow refuses, older ones (and randaug.c) give zeros
            for neg in (0, 1):
                src = Image.fromarray(img, "RGB")
                if aa is not None:
                    aa.random = FixedRandom(0.9 if neg else 0.1)
                    out = aa.AugmentOp(name, prob=1.0, magnitude=mag, hparams=hp)(src)
                else:
                    out = pil_only_op(name, mag, neg, src, hp["img_mean"])
                out = np.asarray(out.convert("RGB"), dtype=np.uint8)
                cases.append((op_i, mag, neg, out))
    with open(sys.argv[1], "wb") as f:
        f.write(b"RAREF1\n")
        f.write(struct.pack("<3i", w, h, len(cases)))
        f.write(img.tobytes())
        for op_i, mag, neg, out in cases:
            f.write(struct.pack("<idi", op_i, mag, neg))
            f.write(out.tobytes())


main()
