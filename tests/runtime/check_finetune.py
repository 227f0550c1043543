#!/usr/bin/env python3
"""check_finetune.py MODEL.yaml: fine-tuning as timm users do it, against timm itself (issue 17).

A timm DeiT micro (patch 8, embed 32, depth 1, 2 heads) made at img_size 48 (a 6x6 patch grid,
37 tokens) with 1000 classes is saved as safetensors; an emu executable of the same model at
img_size 32 (4x4 grid) with 10 classes trains one step from it (--init, lr 1e-12: the weights
stay what --init made them). Checks:
  - the run says the head was re-initialized and pos_embed resampled;
  - the saved weights load into timm's 10-class, img_size-32 model with strict=True;
  - pos_embed is timm's resample_abs_pos_embed of the pretrained one (bicubic, antialias: rel
    1e-5), also F.interpolate(bicubic, align_corners=False, antialias=True) on the grid, the
    class token kept;
  - head.weight looks like trunc_normal(std .02) (std within 20%, |w| <= 2 std), head.bias zeros;
  - every other weight is the pretrained one (rel 1e-6).
Exits 77 (a ctest skip) without torch or timm, saying so."""
import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    import timm
    from timm.layers import resample_abs_pos_embed
except ImportError as e:
    print(f"SKIPPED: {sys.executable} lacks a module this check needs ({e}); "
          "set DEITC_TORCH_PYTHON to a python with torch and timm")
    sys.exit(77)

MODEL = sys.argv[1]
DEITC = os.environ["DEITC_BIN"]
KW = dict(patch_size=8, embed_dim=32, depth=1, num_heads=2)
failures = 0


def check(ok, what):
    global failures
    print(("ok      " if ok else "FAILED  ") + what)
    failures += not ok


def write_st(path, tensors):
    header, blobs, off = {}, [], 0
    for k, v in tensors.items():
        a = np.ascontiguousarray(v.detach().numpy().astype(np.float32))
        header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: torch.from_numpy(np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]],
                                              dtype=np.float32).reshape(v["shape"]).copy())
            for k, v in h.items() if k != "__metadata__"}


def rel(a, b):
    return float((a - b).norm() / (b.norm() + 1e-30))


torch.manual_seed(0)
with tempfile.TemporaryDirectory() as d:
    pre = timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=48, num_classes=1000, **KW)
    with torch.no_grad():  # a "pretrained" pos_embed with structure, not timm's zeros-ish init
        g = torch.linspace(-1, 1, 6)
        grid = torch.stack([torch.sin(3 * g[:, None] + 0.1 * c) * torch.cos(2 * g[None, :] - 0.05 * c)
                            for c in range(32)], -1).reshape(1, 36, 32)
        pre.pos_embed.copy_(torch.cat([torch.randn(1, 1, 32), grid], 1))
    sd = {k: v for k, v in pre.state_dict().items()}
    write_st(f"{d}/pretrained.safetensors", sd)
    exe = f"{d}/exe"
    subprocess.run([DEITC, "compile", MODEL, "-D", "img_size=32", "-D", "patch_size=8", "-D", "embed_dim=32", "-D",
                    "depth=1", "-D", "num_heads=2", "-D", "num_classes=10", "--target", "emu", "--batch", "2",
                    "-o", exe], check=True, stdout=subprocess.DEVNULL)
    r = subprocess.run([exe, "train", "--init", f"{d}/pretrained.safetensors", "--synthetic", "--steps", "1", "--lr",
                        "1e-12", "--weight-decay", "0", "--save", f"{d}/ft.safetensors"], capture_output=True, text=True)
    check(r.returncode == 0, f"EXE train --init 1000-class, 6x6-grid weights into 10 classes, 4x4: exit {r.returncode} {r.stderr}")
    check("'head.weight' is [1000,32] (1000 classes), the model's [10,32] (10 classes): the head is re-initialized"
          in r.stderr and "'head.bias'" in r.stderr, "the run says the head is re-initialized")
    check("'pos_embed' is [1,37,32] (a 6x6 patch grid), the model's [1,17,32] (4x4): resampled" in r.stderr,
          "the run says pos_embed is resampled")
    print(r.stderr.strip())
    ft = read_st(f"{d}/ft.safetensors")
    m = timm.create_model("deit_tiny_patch16_224", pretrained=False, img_size=32, num_classes=10, **KW)
    res = m.load_state_dict(ft, strict=True)
    check(not res.missing_keys and not res.unexpected_keys, f"the saved weights load into timm strict=True ({res})")
    want = resample_abs_pos_embed(sd["pos_embed"], new_size=[4, 4], num_prefix_tokens=1)
    e = rel(ft["pos_embed"], want)
    check(e < 1e-5, f"pos_embed = timm's resample_abs_pos_embed: rel {e:.2e}")
    grid = sd["pos_embed"][:, 1:].reshape(1, 6, 6, 32).permute(0, 3, 1, 2)
    t = F.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False, antialias=True)
    t = torch.cat([sd["pos_embed"][:, :1], t.permute(0, 2, 3, 1).reshape(1, 16, 32)], 1)
    e2 = rel(ft["pos_embed"], t)
    check(e2 < 1e-5 and torch.equal(ft["pos_embed"][:, 0], sd["pos_embed"][:, 0]),
          f"= F.interpolate(bicubic, align_corners=False, antialias=True) on the grid, class token kept: rel {e2:.2e}")
    na = F.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False, antialias=False)
    print(f"(without antialias torch's bicubic is {rel(t[:, 1:], na.permute(0, 2, 3, 1).reshape(1, 16, 32)):.2e} away)")
    w, b = ft["head.weight"], ft["head.bias"]
    check(abs(float(w.std()) - 0.02) < 0.004 and float(w.abs().max()) <= 0.04 + 1e-6 and float(b.abs().max()) < 1e-8,
          f"head: weight std {float(w.std()):.4f}, max |w| {float(w.abs().max()):.4f} (trunc_normal .02), bias max "
          f"{float(b.abs().max()):.1e} (zeros)")
    worst = max(float((ft[k] - v).norm() / (v.norm() + 1e-3)) for k, v in sd.items()
                if k not in ("pos_embed", "head.weight", "head.bias"))
    check(worst < 1e-6, f"the other weights are the pretrained ones: worst rel {worst:.1e}")
sys.exit(1 if failures else 0)
