"""A small vision transformer, for ``interpretgan run --model-file examples/vit.py:build``.

Patch 4 on 32-px RGB images (an 8×8 grid of patch tokens), a CLS token, four pre-norm
blocks of width 64, a final LayerNorm and a linear head on the CLS token. It expects
normalised inputs ((x − mean) / std): give the statistics with ``--normalize``.
``benchmarks/everyday_models.py`` trains it on a 4-class image folder and diagnoses it.

Every explainable layer but the head returns tokens (B, 65, 64): the generators read them as
an 8×8 grid of patches plus the CLS token (``interpretgan layers --model-file
examples/vit.py:build`` shows it).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class PatchEmbed(nn.Module):
    """x (B, 3, 32, 32) → tokens (B, 1 + 64, dim): CLS first, then the patches row by row,
    with learned position embeddings."""

    def __init__(self, dim: int = 64, patch: int = 4, side: int = 32, channels: int = 3):
        super().__init__()
        self.proj = nn.Conv2d(channels, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 1 + (side // patch) ** 2, dim) * 0.02)

    def forward(self, x):
        t = self.proj(x).flatten(2).transpose(1, 2)  # (B, 64, dim)
        return torch.cat([self.cls.expand(len(t), -1, -1), t], 1) + self.pos


class Attention(nn.Module):
    """Multi-head self-attention written the timm way (one qkv projection): (B, N, dim) → same."""

    def __init__(self, dim: int = 64, heads: int = 4):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)). (B, N, dim) → same."""

    def __init__(self, dim: int = 64, heads: int = 4, mlp: int = 2):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp * dim), nn.GELU(), nn.Linear(mlp * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """x (B, 3, 32, 32), normalised → logits (B, classes)."""

    def __init__(self, classes: int = 4, dim: int = 64, depth: int = 4):
        super().__init__()
        self.embed = PatchEmbed(dim)
        self.blocks = nn.Sequential(*[Block(dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        return self.head(self.norm(self.blocks(self.embed(x)))[:, 0])


def build() -> ViT:
    return ViT()
