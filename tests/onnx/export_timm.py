#!/usr/bin/env python3
"""export_timm.py OUTDIR: a reduced timm DeiT (deit_tiny_patch16_224's code at image 32, patch 8,
dim 24, 3 heads, depth 2, 10 classes; perturbed weights) exported by each of torch's exporters,
with PyTorch's logits, for tests/onnx's timm cases (committed: tests/data/onnx/timm/):

  legacy17.onnx    torch.onnx.export(dynamo=False, opset_version=17)
  dynamo.onnx      torch.onnx.export(dynamo=True)                  (default opset, optimized)
  noopt.onnx       torch.onnx.export(dynamo=True, optimize=False)  (CastLike, unfolded transposes)
  opset23.onnx     torch.onnx.export(dynamo=True, opset_version=23) (the Attention op)
  batch.safetensors     images f32 [2,3,32,32], labels i64 [2]
  expected.safetensors  logits of the exported model, and the losses of 3 AdamW steps on the batch
                        (float64; lr 1e-3, weight decay 0.05 on timm's groups, as `deitc run --steps`)
  init.safetensors      the exported model's state_dict (timm's names and layout), and
                        after_steps.safetensors its weights after those 3 steps
  timm.safetensors      another model's state_dict (timm names), and timm_expected.safetensors
                        its logits; timm_module.safetensors the same with every name under
                        'module.' (DDP), timm_f64.safetensors the same in float64;
                        timm_nohead.safetensors the same without head.*, and
                        timm_nohead_expected.safetensors the logits with the exported model's head

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
    init = {k: v.detach().clone() for k, v in m.state_dict().items()}
    m64 = make_model(0).double()
    m64.load_state_dict({k: v.double() for k, v in init.items()})
    decay = [p for k, p in m64.named_parameters() if p.ndim > 1 and k not in ("pos_embed", "cls_token")]
    rest = [p for k, p in m64.named_parameters() if not (p.ndim > 1 and k not in ("pos_embed", "cls_token"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    losses = []
    for _ in range(3):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(m64(x.double()), labels)
        losses.append(float(loss))
        loss.backward()
        opt.step()
    save(f"{out}/expected.safetensors", {"logits": logits.numpy(), "losses": np.array(losses, np.float32)})
    save(f"{out}/init.safetensors", {k: v.numpy() for k, v in init.items()})
    save(f"{out}/after_steps.safetensors", {k: v.detach().float().numpy() for k, v in m64.state_dict().items()})
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
    save(f"{out}/timm_nohead.safetensors", {k: v for k, v in sd.items() if not k.startswith("head.")})
    t.head.load_state_dict(m.head.state_dict())
    with torch.no_grad():
        save(f"{out}/timm_nohead_expected.safetensors", {"logits": t(x).numpy()})
    print("parameters:", sum(p.numel() for p in m.parameters()), "torch", torch.__version__, "timm", timm.__version__)


if __name__ == "__main__":
    main()
