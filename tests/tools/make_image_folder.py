#!/usr/bin/env python3
"""make_image_folder.py: writes the ImageFolder test data under tests/data/image_folder/ and the
reference pixels PIL gives for it (torchvision's ImageFolder + timm's eval transform, uint8 before
normalization), for tests/images/test_image_folder.c.

  train/<class>/<file>   3 classes, 12 images: JPEG (RGB, grayscale, progressive, 4:2:0 and
                         4:4:4) and PNG (RGB, RGBA, LA, palette, palette + tRNS, 1-bit,
                         16-bit RGB, interlaced),
                         smaller and larger than the target, several aspect ratios, plus entries
                         the loader must ignore (hidden files and folders, a .txt file)
  bad/cmyk.jpg           a CMYK JPEG (refused by the loader)
  expected.safetensors   pixels F16 [N,3,32,32] (whole numbers 0..255, exact in F16) (img_size 32: shorter side resized to
                         floor(32 / 0.875) = 36 with Image.BILINEAR, center crop 32), labels I64
                         [N], lossless I32 [N] (1 for PNG), in ImageFolder order

Usage: /usr/bin/python3 tests/tools/make_image_folder.py [OUT_DIR]   (needs PIL: python3-pil)
Deterministic: the same bytes on every run with the same Pillow/libjpeg.
"""
import json
import math
import os
import shutil
import struct
import sys
import zlib

import numpy as np
from PIL import Image

IMG_SIZE = 32
CROP_PCT = 0.875


def pattern(w, h, seed):
    """A smooth colour pattern with some edges (so resizing and JPEG both matter)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127.5 + 127.5 * np.sin(x / (3.0 + seed) + y / 7.0)
    g = 255.0 * ((x + 2 * y + 11 * seed) % 23) / 22.0
    b = np.where(((x // 4) + (y // 4) + seed) % 2 == 0, 230.0, 25.0)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png16_rgb(path, rgb16):
    """16-bit RGB PNG (PIL cannot write one)."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)) +
            png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(data)


def make_images(root):
    train = os.path.join(root, "train")
    if os.path.exists(train):
        shutil.rmtree(train)
    for c in ("cat", "dog", "zebra", ".hidden_class"):
        os.makedirs(os.path.join(train, c))
    cat, dog, zebra = (os.path.join(train, c) for c in ("cat", "dog", "zebra"))
    # cat: JPEG RGB larger than the target (landscape), grayscale JPEG (portrait), RGBA PNG,
    # a small RGB PNG with an upper-case extension
    Image.fromarray(pattern(64, 48, 1)).save(os.path.join(cat, "a_rgb.jpg"), quality=90)
    Image.fromarray(pattern(30, 50, 2)[:, :, 0]).save(os.path.join(cat, "b_gray.jpg"), quality=85)
    rgba = np.concatenate([pattern(40, 40, 3), pattern(40, 40, 4)[:, :, :1]], axis=-1)
    Image.fromarray(rgba, "RGBA").save(os.path.join(cat, "c_rgba.png"))
    Image.fromarray(pattern(20, 12, 5)).save(os.path.join(cat, "d_small.PNG"))
    # dog: palette PNG, 16-bit RGB PNG exactly 36x36 (no resize pass), big 4:4:4 JPEG, LA PNG
    # (interlaced)
    Image.fromarray(pattern(70, 45, 6)).quantize(colors=64, dither=Image.Dither.NONE).save(
        os.path.join(dog, "e_palette.png"))
    p16 = pattern(36, 36, 7).astype(np.uint16) * 257 + np.arange(36, dtype=np.uint16)[None, :, None]
    write_png16_rgb(os.path.join(dog, "f_16bit.png"), p16)
    Image.fromarray(pattern(120, 90, 8)).save(os.path.join(dog, "g_big.jpeg"), quality=95, subsampling=0)
    la = np.stack([pattern(25, 60, 9)[:, :, 1], pattern(25, 60, 9)[:, :, 2]], axis=-1)
    Image.fromarray(la, "LA").save(os.path.join(dog, "h_la.png"), interlace=1)
    # zebra: a tiny JPEG (upscaled), a progressive JPEG
    Image.fromarray(pattern(5, 9, 10)).save(os.path.join(zebra, "i_tiny.jpg"), quality=90)
    Image.fromarray(pattern(50, 50, 11)).save(os.path.join(zebra, "j_progressive.jpg"), quality=80,
                                              progressive=True)
    # zebra too: a palette PNG with a transparent colour (tRNS), a 1-bit black-and-white PNG
    pal = Image.fromarray(pattern(33, 21, 15)).quantize(colors=16, dither=Image.Dither.NONE)
    pal.save(os.path.join(zebra, "k_trns.png"), transparency=3)
    Image.fromarray(pattern(40, 28, 16)[:, :, 2] > 128).save(os.path.join(zebra, "l_1bit.png"))
    # ignored: hidden files, a hidden class folder, other extensions, a top-level file
    Image.fromarray(pattern(8, 8, 12)).save(os.path.join(zebra, ".hidden.jpg"))
    Image.fromarray(pattern(8, 8, 13)).save(os.path.join(train, ".hidden_class", "x.jpg"))
    with open(os.path.join(zebra, "notes.txt"), "w") as f:
        f.write("not an image\n")
    with open(os.path.join(train, "README.txt"), "w") as f:
        f.write("a file at the top level is not a class\n")
    # bad/: inputs the loader must refuse that the C test cannot make itself (a CMYK JPEG)
    bad = os.path.join(root, "bad")
    os.makedirs(bad, exist_ok=True)
    Image.fromarray(pattern(16, 16, 14)).convert("CMYK").save(os.path.join(bad, "cmyk.jpg"), quality=75)
    return train


def image_folder(train):
    """torchvision.datasets.ImageFolder's listing, restricted to .jpg/.jpeg/.png."""
    classes = sorted(e.name for e in os.scandir(train) if e.is_dir() and not e.name.startswith("."))
    samples = []
    for k, c in enumerate(classes):
        for name in sorted(os.listdir(os.path.join(train, c))):
            if not name.startswith(".") and name.lower().endswith((".jpg", ".jpeg", ".png")):
                samples.append((os.path.join(train, c, name), k))
    return samples


def eval_transform(path):
    """timm's eval transform up to ToTensor: Resize(floor(size / crop_pct)) + CenterCrop(size)."""
    im = Image.open(path).convert("RGB")
    s = math.floor(IMG_SIZE / CROP_PCT)
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(s * long / short)  # torchvision's Resize(int)
    size = (s, new_long) if w <= h else (new_long, s)
    if size != (w, h):
        im = im.resize(size, Image.BILINEAR)
    w, h = im.size
    left, top = int(round((w - IMG_SIZE) / 2.0)), int(round((h - IMG_SIZE) / 2.0))
    im = im.crop((left, top, left + IMG_SIZE, top + IMG_SIZE))
    return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, (dtype, arr) in tensors.items():
        b = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                              "data", "image_folder")
    os.makedirs(root, exist_ok=True)
    train = make_images(root)
    samples = image_folder(train)
    pixels = np.stack([eval_transform(p) for p, _ in samples]).astype("<f2")  # 0..255: exact in F16
    labels = np.array([k for _, k in samples], dtype="<i8")
    lossless = np.array([p.lower().endswith(".png") for p, _ in samples], dtype="<i4")
    write_safetensors(os.path.join(root, "expected.safetensors"),
                      {"pixels": ("F16", pixels), "labels": ("I64", labels), "lossless": ("I32", lossless)})
    for (p, k) in samples:
        print(f"{k} {os.path.relpath(p, root)} {Image.open(p).mode} {Image.open(p).size}")


if __name__ == "__main__":
    main()
