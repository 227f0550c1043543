#!/usr/bin/env python3
"""torch_baseline.py: the PyTorch side of benchmarks/gpu_check.

Times one DeiT training step (forward, mean cross-entropy, backward, AdamW) in PyTorch, in
the modes deitc is compared with: eager fp32, eager AMP fp16 (with GradScaler), eager AMP
bf16, and torch.compile'd versions of those. Random weights and random data, the same batch
as deitc's executable, CUDA events around each step after warm-up steps; images/s from the
median step. torch.compile's compile time is the wall time of the first compiled step.

Writes one JSON object per mode to --out (JSON lines, flushed as each mode ends, so a run
killed by its time limit keeps the modes it finished):
  {"model", "mode", "batch", "images_per_s", "step_ms_median", "step_ms_min", "step_ms_max",
   "device_memory_bytes", "compile_s" (compile modes), "torch", "device_name", ...}
or {"model", "mode", "error": "..."} for a mode that failed (out of memory, no torch.compile).

The model: timm's --model (e.g. deit_small_patch16_224, num_classes 1000, img 224); with
--img-size/--patch-size/... a timm VisionTransformer of those sizes (the dry-run's micro
models); without timm, a small built-in ViT of those sizes (dry-run on a machine without
timm). --fake writes plausible numbers without importing torch (dry-run without torch).
"""
import argparse
import gc
import json
import os
import statistics
import sys
import time

MODES = ("eager-fp32", "eager-fp16", "eager-bf16", "compile-fp32", "compile-fp16", "compile-bf16")


def emit(out, rec):
    line = json.dumps(rec, sort_keys=True)
    print(line, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


def builtin_vit(torch, spec):
    """A plain-PyTorch ViT/DeiT of spec's sizes (only for machines without timm)."""
    nn = torch.nn
    d, heads, depth = spec["embed_dim"], spec["num_heads"], spec["depth"]
    npatch = (spec["img_size"] // spec["patch_size"]) ** 2

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm1, self.norm2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(self, x):
            b, n, _ = x.shape
            q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
            a = ((q @ k.transpose(-2, -1)) * (d // heads) ** -0.5).softmax(-1)
            x = x + self.proj((a @ v).transpose(1, 2).reshape(b, n, d))
            return x + self.fc2(nn.functional.gelu(self.fc1(self.norm2(x))))

    class ViT(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch = nn.Conv2d(3, d, spec["patch_size"], spec["patch_size"])
            self.cls = nn.Parameter(torch.zeros(1, 1, d))
            self.pos = nn.Parameter(torch.randn(1, npatch + 1, d) * 0.02)
            self.blocks = nn.Sequential(*[Block() for _ in range(depth)])
            self.norm, self.head = nn.LayerNorm(d, eps=1e-6), nn.Linear(d, spec["num_classes"])

        def forward(self, x):
            x = self.patch(x).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
            return self.head(self.norm(self.blocks(x))[:, 0])

    return ViT()


def make_model(torch, args, spec):
    try:
        import timm
    except ImportError:
        timm = None
    if timm is not None and spec is None:
        return timm.create_model(args.model, pretrained=False), "timm " + timm.__version__
    if timm is not None:
        from timm.models.vision_transformer import VisionTransformer
        return VisionTransformer(img_size=spec["img_size"], patch_size=spec["patch_size"],
                                 embed_dim=spec["embed_dim"], depth=spec["depth"],
                                 num_heads=spec["num_heads"], num_classes=spec["num_classes"]), \
            "timm %s VisionTransformer" % timm.__version__
    if spec is None:
        raise RuntimeError("timm is not installed and no --img-size/... sizes were given")
    return builtin_vit(torch, spec), "built-in ViT (no timm)"


def run_mode(torch, args, spec, mode):
    kind, prec = mode.split("-")
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
    if kind == "compile" and not hasattr(torch, "compile"):
        raise RuntimeError("torch.compile is not available in torch %s" % torch.__version__)
    if prec == "fp16" and not cuda and not (hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler")):
        raise RuntimeError("AMP fp16 on the CPU needs torch.amp.GradScaler (torch >= 2.3); this is torch %s"
                           % torch.__version__)
    torch.manual_seed(0)
    model, source = make_model(torch, args, spec)
    model = model.to(dev).train()
    img = spec["img_size"] if spec else 224
    ncls = spec["num_classes"] if spec else model.num_classes
    images = torch.randn(args.batch, 3, img, img, device=dev)
    labels = torch.randint(0, ncls, (args.batch,), device=dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    fwd = torch.compile(model) if kind == "compile" else model
    amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(prec)
    scaler = None
    if prec == "fp16":
        scaler = torch.amp.GradScaler(dev.type) if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler") \
            else torch.cuda.amp.GradScaler()
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        if amp_dtype is not None:
            with torch.autocast(device_type=dev.type, dtype=amp_dtype):
                loss = loss_fn(fwd(images), labels)
        else:
            loss = loss_fn(fwd(images), labels)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return loss

    def sync():
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    loss = step()
    sync()
    first_s = time.perf_counter() - t0
    for _ in range(max(args.warmup - 1, 0)):
        step()
    sync()
    times = []
    for _ in range(args.steps):
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            step()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t = time.perf_counter()
            step()
            times.append((time.perf_counter() - t) * 1e3)
    med = statistics.median(times)
    rec = {
        "mode": mode, "batch": args.batch, "images_per_s": args.batch / (med / 1e3),
        "step_ms_median": med, "step_ms_min": min(times), "step_ms_max": max(times),
        "steps": args.steps, "warmup": args.warmup, "first_step_s": first_s,
        "loss_first_step": float(loss.detach().float().cpu()), "model_source": source,
        "timer": "cuda events" if cuda else "perf_counter (cpu)", "tf32": bool(args.tf32 and cuda),
        "device_memory_bytes": torch.cuda.max_memory_allocated() if cuda else None,
    }
    if kind == "compile":
        rec["compile_s"] = max(first_s - med / 1e3, 0.0)
    return rec


def fake_mode(args, mode):
    """Deterministic plausible numbers: the dry-run's stand-in when torch is absent. The mode
    --fake-hang names never ends (a dry-run's proof that a timed-out mode is a failure)."""
    if mode == args.fake_hang:
        time.sleep(10 ** 6)
    ms = {"fp32": 40.0, "fp16": 15.0, "bf16": 15.0}[mode.split("-")[1]] * (0.8 if "compile" in mode else 1.0)
    rec = {"mode": mode, "batch": args.batch, "images_per_s": args.batch / (ms / 1e3),
           "step_ms_median": ms, "step_ms_min": ms * 0.98, "step_ms_max": ms * 1.05,
           "steps": args.steps, "warmup": args.warmup, "device_memory_bytes": 1 << 30,
           "model_source": "fake", "timer": "fake", "fake": True}
    if "compile" in mode:
        rec["compile_s"] = 12.5
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="timm model name, e.g. deit_tiny_patch16_224")
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--modes", default="eager-fp32,eager-fp16,eager-bf16,compile-bf16")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 for fp32 matmuls (default: PyTorch's default, off)")
    ap.add_argument("--out", help="append JSON lines here (also printed)")
    ap.add_argument("--fake", action="store_true", help="no torch: write fake numbers")
    ap.add_argument("--fake-hang", help=argparse.SUPPRESS)
    for k in ("img-size", "patch-size", "embed-dim", "depth", "num-heads", "num-classes"):
        ap.add_argument("--" + k, type=int)
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in MODES:
            ap.error("unknown mode '%s' (modes: %s)" % (m, ", ".join(MODES)))
    sizes = {k: getattr(args, k) for k in ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "num_classes")}
    spec = sizes if all(v is not None for v in sizes.values()) else None
    if spec is None and any(v is not None for v in sizes.values()):
        ap.error("give all of --img-size --patch-size --embed-dim --depth --num-heads --num-classes, or none")
    # what this process was given (gpu_check sets library paths for its executables alone)
    base = {"model": args.model, "ld_library_path": os.environ.get("LD_LIBRARY_PATH"),
            "compile_threads": os.environ.get("TORCHINDUCTOR_COMPILE_THREADS")}
    if args.fake:
        for m in modes:
            emit(args.out, dict(base, **fake_mode(args, m)))
        return 0
    import torch
    base["torch"] = torch.__version__
    if args.device == "cuda":
        if not torch.cuda.is_available():
            emit(args.out, dict(base, mode="all", error="torch sees no CUDA device"))
            return 1
        base["device_name"] = torch.cuda.get_device_name(0)
    else:
        base["device_name"] = "cpu"
    failed = 0
    for m in modes:
        try:
            rec = run_mode(torch, args, spec, m)
        except Exception as e:  # one mode failing (OOM, no compiler) must not lose the others
            failed += 1
            msg = "%s: %s" % (type(e).__name__, str(e).strip().splitlines()[0] if str(e).strip() else "")
            rec = {"mode": m, "error": msg[:500]}
            if args.device == "cuda":
                torch.cuda.empty_cache()
        emit(args.out, dict(base, **rec))
        gc.collect()  # the mode's model, optimizer state and compiled graphs
        if m.startswith("compile") and hasattr(torch, "_dynamo"):
            torch._dynamo.reset()
        if args.device == "cuda":
            torch.cuda.empty_cache()
    return 1 if failed == len(modes) else 0


if __name__ == "__main__":
    sys.exit(main())
