#!/usr/bin/env python3
"""check_timm.py MODE DIR: the timm exports of DIR (tests/data/onnx/timm, export_timm.py) through
deitc and back (DEITC_BIN), for each exporter form (legacy opset 17, dynamo, dynamo
optimize=False, dynamo opset 23):

  export  `deitc run --steps 3` then `deitc export`: the ONNX file's initializer names are the
          original file's, and onnxruntime runs it to deitc's logits (1e-4); the opset-23 file
          restamped as opset 24 is refused with the supported range. Needs onnx, onnxruntime,
          numpy.
  timm    the same model compiled for emu, trained 3 steps from its initializers by the EXE and
          saved: loads into timm with load_state_dict(strict=True) and gives deitc's logits
          (rel L2 1e-4); the weights of `deitc run --steps 3` too; and `deitc export` of the EXE's
          weights runs in onnxruntime to the same logits. Needs torch and timm besides.

Exits 77 (a ctest skip) when a module is missing, saying which."""
import json
import os
import struct
import subprocess
import sys
import tempfile

MODE, DIR = sys.argv[1], sys.argv[2]
try:
    import numpy as np
    import onnx
    import onnxruntime
    if MODE == "timm":
        import torch
        import timm
except ImportError as e:
    print(f"SKIPPED: {sys.executable} lacks a module this check needs ({e}); "
          "set DEITC_TORCH_PYTHON to a python with torch, timm, onnx and onnxruntime")
    sys.exit(77)

DEITC = os.environ["DEITC_BIN"]
FORMS = ["legacy17", "dynamo", "noopt", "opset23"]
KW = dict(img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=3, num_classes=10)
failures = 0


def check(ok, what):
    global failures
    print(("ok      " if ok else "FAILED  ") + what)
    failures += not ok


def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        dt = {"F32": np.float32, "I64": np.int64, "F64": np.float64}[v["dtype"]]
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=dt).reshape(v["shape"]).copy()
    return out


def sh(*argv):
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(argv)}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r.stdout + r.stderr


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def deitc_logits(d, model, weights=None):
    out = os.path.join(d, "logits.safetensors")
    sh(DEITC, "run", model, *(["--weights", weights] if weights else []), "--input", BATCH, "-o", out)
    return read_st(out)["logits"]


def ort_logits(model, images):
    try:
        sess = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    except Exception as e:  # an onnxruntime too old for the file's opset
        print(f"note    onnxruntime {onnxruntime.__version__} cannot load {os.path.basename(model)}: {e}")
        return None
    return sess.run(None, {sess.get_inputs()[0].name: images})[0]


def check_export(d, form, trained, tag):
    model = os.path.join(DIR, form + ".onnx")
    out = os.path.join(d, f"{form}_{tag}.onnx")
    sh(DEITC, "export", model, "--weights", trained, "-o", out)
    orig, got = onnx.load(model), onnx.load(out)
    names = lambda m: sorted(t.name for t in m.graph.initializer)  # noqa: E731
    check(names(got) == names(orig), f"{form} ({tag}): exported initializers are the original file's "
          f"({len(names(got))}, e.g. {[n for n in names(got) if not n.startswith(('blocks', 'head', 'norm'))][:3]})")
    ours = deitc_logits(d, model, trained)
    theirs = ort_logits(out, IMAGES)
    if theirs is not None:
        check(rel(theirs, ours) < 1e-4, f"{form} ({tag}): onnxruntime on the export vs deitc: rel L2 {rel(theirs, ours):.2e}")
    return ours


def timm_logits(weights):
    m = timm.create_model("deit_tiny_patch16_224", pretrained=False, **KW).eval()
    res = m.load_state_dict({k: torch.from_numpy(v) for k, v in read_st(weights).items()}, strict=True)
    with torch.no_grad():
        return m(torch.from_numpy(IMAGES)).numpy(), res


BATCH = os.path.join(DIR, "batch.safetensors")
IMAGES = read_st(BATCH)["images"]
with tempfile.TemporaryDirectory(prefix="deitc_timm_") as d:
    for form in FORMS:
        model = os.path.join(DIR, form + ".onnx")
        trained = os.path.join(d, form + "_run.safetensors")
        sh(DEITC, "run", model, "--input", BATCH, "--steps", "3", "--lr", "1e-3", "--weight-decay", "0.05",
           "-o", trained, "--losses", os.path.join(d, "losses.safetensors"))
        if MODE == "export":
            check_export(d, form, trained, "deitc run")
            continue
        ours = deitc_logits(d, model, trained)
        theirs, res = timm_logits(trained)
        check(rel(theirs, ours) < 1e-4, f"{form}: `deitc run --steps 3` weights in timm (strict=True: {res}): "
              f"logits vs deitc rel L2 {rel(theirs, ours):.2e}")
        exe, saved = os.path.join(d, form + "_exe"), os.path.join(d, form + "_exe.safetensors")
        sh(DEITC, "compile", model, "--target", "emu", "--batch", "2", "-o", exe)
        sh(exe, "train", "--data", BATCH, "--steps", "3", "--no-shuffle", "--lr", "1e-3", "--weight-decay", "0.05",
           "--save", saved)
        ours = check_export(d, form, saved, "emu EXE train")
        theirs, res = timm_logits(saved)
        check(rel(theirs, ours) < 1e-4, f"{form}: emu EXE trained weights in timm (strict=True: {res}): "
              f"logits vs deitc rel L2 {rel(theirs, ours):.2e}")
    if MODE == "export":
        m = onnx.load(os.path.join(DIR, "opset23.onnx"))
        for o in m.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = 24
        onnx.save(m, os.path.join(d, "opset24.onnx"))
        r = subprocess.run([DEITC, "inspect", os.path.join(d, "opset24.onnx")], capture_output=True, text=True)
        check(r.returncode == 1 and "opset 24 is not supported (7 to 23;" in r.stderr,
              f"opset 24 refused with the supported range: {r.stderr.strip()[-160:]}")
print(f"{failures} check(s) failed" if failures else "all checks passed")
sys.exit(1 if failures else 0)
