#!/usr/bin/python3
"""export_deit_tiny.py OUT.onnx [OPSET]: exports a full-size DeiT-Ti (224, patch 16, dim 192,
depth 12, 3 heads, 1000 classes; timm's module structure and parameter names) with random
weights via torch.onnx.export, dynamic batch. Exits 77 when torch or onnx is missing so that
the test calling it can report a skip."""
import sys

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import onnx  # noqa: F401  (torch.onnx.export needs it)
except ImportError as e:
    print(f"SKIPPED: no torch ({e})")
    sys.exit(77)


class Attention(nn.Module):
    def __init__(s, dim, heads):
        super().__init__()
        s.heads, s.scale = heads, (dim // heads) ** -0.5
        s.qkv, s.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)

    def forward(s, x):
        B, N, C = x.shape
        q, k, v = s.qkv(x).reshape(B, N, 3, s.heads, C // s.heads).permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-2, -1)) * s.scale).softmax(dim=-1)
        return s.proj((a @ v).transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(s, dim, hidden):
        super().__init__()
        s.fc1, s.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(s, x):
        return s.fc2(F.gelu(s.fc1(x)))


class Block(nn.Module):
    def __init__(s, dim, heads):
        super().__init__()
        s.norm1, s.attn = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        s.norm2, s.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, 4 * dim)

    def forward(s, x):
        x = x + s.attn(s.norm1(x))
        return x + s.mlp(s.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(s, patch, dim):
        super().__init__()
        s.proj = nn.Conv2d(3, dim, patch, patch)

    def forward(s, x):
        return s.proj(x).flatten(2).transpose(1, 2)


class DeiT(nn.Module):
    def __init__(s, img=224, patch=16, dim=192, depth=12, heads=3, classes=1000):
        super().__init__()
        s.patch_embed = PatchEmbed(patch, dim)
        s.cls_token = nn.Parameter(0.02 * torch.randn(1, 1, dim))
        s.pos_embed = nn.Parameter(0.02 * torch.randn(1, (img // patch) ** 2 + 1, dim))
        s.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        s.norm, s.head = nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, classes)

    def forward(s, x):
        x = s.patch_embed(x)
        x = torch.cat((s.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + s.pos_embed
        return s.head(s.norm(s.blocks(x))[:, 0])


def main():
    torch.manual_seed(0)
    m = DeiT().eval()
    with torch.no_grad():  # distinct values everywhere: torch.onnx.export merges equal initializers
        for p in m.parameters():
            p.add_(0.01 * torch.randn(p.shape))
    opset = int(sys.argv[2]) if len(sys.argv) > 2 else 17
    torch.onnx.export(m, torch.randn(1, 3, 224, 224), sys.argv[1], opset_version=opset,
                      input_names=["x"], output_names=["out"],
                      dynamic_axes={"x": {0: "batch"}, "out": {0: "batch"}})
    print("parameters:", sum(p.numel() for p in m.parameters()))


if __name__ == "__main__":
    main()
