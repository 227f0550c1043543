"""check_mixup_timm.py TEST_MIXUP: deitc's Mixup / CutMix against timm's (timm.data.Mixup,
mode 'batch', label smoothing 0.1, SoftTargetCrossEntropy) for the same lam and box centre:

- CutMix: timm's cutmix_bbox_and_lam (its np.random.randint replaced by the given centre) gives
  deitc's box and corrected lam exactly (runtime/mixup.c, printed by `test_mixup mix`);
- the images: timm's Mixup._mix_batch (its draw replaced by the given lam / cutmix choice)
  equals, bit for bit, x*w + flip(x)*wf with deitc's "mix" input in float32 (the graph's
  arithmetic, passes/mixup.c);
- the loss: timm's SoftTargetCrossEntropy of timm's mixup_target equals deitc's decomposition
  lam*CE_s(y) + (1-lam)*CE_s(flip y) with timm's LabelSmoothingCrossEntropy (within 1e-6).
Exits 77 (skipped) without torch and timm."""
import subprocess
import sys

try:
    import numpy as np
    import torch
    from timm.data import mixup as tm
    from timm.data.mixup import Mixup
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
except ImportError as e:
    print(f"skipped: needs torch and timm ({e})")
    sys.exit(77)

helper = sys.argv[1]
B, C, H, W, K, S = 4, 3, 13, 11, 10, 0.1
g = torch.Generator().manual_seed(0)
fails = 0


def deitc_mix(cutmix, lam, cy, cx):
    out = subprocess.run([helper, "mix", str(int(cutmix)), repr(lam), str(H), str(W), str(cy), str(cx)],
                         check=True, capture_output=True, text=True).stdout.split("\n")
    yl, yh, xl, xh, lam2 = out[0].split()
    v = np.array([float(t) for t in out[1:] if t], dtype=np.float32)
    return (int(yl), int(yh), int(xl), int(xh)), float(lam2), v


for cutmix, lam, cy, cx in [(False, 0.3183098861837907, 0, 0), (False, 0.77, 0, 0), (True, 0.55, 1, 9),
                            (True, 0.2, 12, 0), (True, 0.9, 6, 5), (True, 0.04, 3, 3)]:
    x = torch.randn(B, C, H, W, generator=g)
    y = torch.tensor([0, 7, 3, 3])
    logits = torch.randn(B, K, generator=g, dtype=torch.float64)
    box, lam_d, v = deitc_mix(cutmix, lam, cy, cx)
    m = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch", label_smoothing=S,
              num_classes=K)
    m._params_per_batch = lambda: (lam, cutmix)
    ints = iter([cy, cx])
    saved = np.random.randint
    np.random.randint = lambda *a, **k: next(ints)
    try:
        if cutmix:
            (yl, yh, xl, xh), lam_t = tm.cutmix_bbox_and_lam(x.shape, lam)
            ints = iter([cy, cx])
        xt = x.clone()
        lam_t = m._mix_batch(xt)
    finally:
        np.random.randint = saved
    if cutmix and (box != (int(yl), int(yh), int(xl), int(xh)) or lam_d != float(lam_t)):
        print(f"cutmix lam {lam} at ({cy},{cx}): deitc box {box} lam {lam_d}, timm {(yl, yh, xl, xh)} lam {lam_t}")
        fails += 1
    hw = H * W
    w = torch.from_numpy(v[:hw].reshape(1, 1, H, W))
    wf = torch.from_numpy(v[hw:2 * hw].reshape(1, 1, H, W))
    xd = x * w + x.flip(0) * wf
    if not torch.equal(xd, xt):
        print(f"{'cutmix' if cutmix else 'mixup'} lam {lam}: images differ from timm's, max "
              f"{(xd - xt).abs().max().item():.3g}")
        fails += 1
    lam_in, lamf_in = float(v[2 * hw]), float(v[2 * hw + 1])
    if lam_in != np.float32(lam_t) or lamf_in != np.float32(1 - lam_t):
        print(f"lam slots {lam_in} {lamf_in}, timm's lam {lam_t}")
        fails += 1
    target = tm.mixup_target(y, K, lam_t, S)
    want = SoftTargetCrossEntropy()(logits, target.double()).item()
    ce = LabelSmoothingCrossEntropy(S)
    got = lam_t * ce(logits, y).item() + (1 - lam_t) * ce(logits, y.flip(0)).item()
    if abs(got - want) > 1e-6 * abs(want):
        print(f"loss: deitc's decomposition {got} vs timm's SoftTargetCrossEntropy {want}")
        fails += 1
print("mixup vs timm:", "ok" if not fails else f"{fails} failures")
sys.exit(1 if fails else 0)
