#!/usr/bin/env python3
"""export_timm.py OUTDIR: a reduced timm DeiT (deit_tiny_patch16_224's code at image 32, patch 8,
dim 24, 3 heads, depth 2, 10 classes; perturbed weights) exported by each of torch's exporters,
with PyTorch's logits, for tests/onnx's timm cases (committed: tests/data/onnx/timm/):

  legacy17.onnx    torch.onnx.export(dynamo=False, opset_version=17)
  dynamo.onnx      torch.onnx.export(dynamo=True)                  (default opset, optimized)
  noopt.onnx       torch.onnx.export(dynamo=True, optimize=False)  (CastLike, unfolded transposes)
  opset23.onnx     torch.onnx.export(dynamo=True, opset_version=23) (the Attention op)
  batch.safetensors     images f32 [2,3,32,32], labels i64 [2]
  expected.safetensors  logits of the exported model
  timm.safetensors      another model's state_dict (timm names), and timm_expected.safetensors
                        its logits; timm_module.safetensors the same with every name under
                        'module.' (DDP), timm_f64.safetensors the same in float64

Also used at test time by check_timm.py (loading trained weights back into timm). Needs torch,
timm, onnx and onnxscript; exits 77 (a ctest skip) without them."""
import json
import struct
import sys

try:
    import numpy as np
    import torch
    import timm
    import onnx  # noqa: F401
    import onnxscript  # noqa: F401
except ImportError as e:
    print(f"SKIPPED: needs torch, timm, onnx and onnxscript ({e})")
    sys.exit(77)

KW = dict(img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=3, num_classes=10)


def make_model(seed):
    torch.manual_seed(seed)
    m = timm.create_model("deit_tiny_patch16_224", pretrained=False, **KW).eval()
    with torch.no_grad():  # distinct values everywhere (torch's exporter merges equal initializers)
        for p in m.parameters():
            p.add_(0.05 * torch.randn(p.shape))
    return m


def save(path, tensors):
    hdr, off, blobs = {}, 0, []
    for k, a in tensors.items():
        a = np.ascontiguousarray(a)
        b = a.tobytes()
        dt = {"float32": "F32", "int64": "I64", "float64": "F64"}[str(a.dtype)]
        hdr[k] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    out = sys.argv[1]
    m = make_model(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 32, 32, generator=g)
    labels = torch.tensor([3, 7])
    with torch.no_grad():
        logits = m(x)
    save(f"{out}/batch.safetensors", {"images": x.numpy(), "labels": labels.numpy()})
    save(f"{out}/expected.safetensors", {"logits": logits.numpy()})
    torch.onnx.export(m, (x,), f"{out}/legacy17.onnx", dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["logits"])
    torch.onnx.export(m, (x,), f"{out}/dynamo.onnx", dynamo=True, external_data=False)
    torch.onnx.export(m, (x,), f"{out}/noopt.onnx", dynamo=True, optimize=False, external_data=False)
    torch.onnx.export(m, (x,), f"{out}/opset23.onnx", dynamo=True, opset_version=23, external_data=False)
    t = make_model(5)
    sd = {k: v.detach().numpy() for k, v in t.state_dict().items()}
    with torch.no_grad():
        tl = t(x)
    save(f"{out}/timm.safetensors", sd)
    save(f"{out}/timm_module.safetensors", {"module." + k: v for k, v in sd.items()})
    save(f"{out}/timm_f64.safetensors", {k: v.astype(np.float64) for k, v in sd.items()})
    save(f"{out}/timm_expected.safetensors", {"logits": tl.numpy()})
    print("parameters:", sum(p.numel() for p in m.parameters()), "torch", torch.__version__, "timm", timm.__version__)


if __name__ == "__main__":
    main()
