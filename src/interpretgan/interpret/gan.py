"""InterpretGAN networks and losses (paper Section 3, Appendix C).

For a layer output l = f_pre(x) a compression network C maps l to a code, a progressive
generator G maps the code to an explanation x̂ = G(C(l)) in [0, 1], and a progressive
discriminator D tells x̂ from real images. G and C minimise the GAN loss plus
λ·L_I, where L_I is the cross-entropy of f(x̂) against f(x)'s label (Eq. 3–4).

Progressive GAN parts follow Karras et al. (2018): equalised learning rate, pixel norm,
minibatch standard deviation, nearest up-sampling, two 3×3 convs per scale and a fade-in
of each new scale.

G and D are *stacks*: one module holds ``M`` independent networks ("members", e.g. the
generators of several layers) with their weights stacked along a leading dimension, run as
grouped convolutions and batched matmuls. One stacked step launches the kernels of one
network, not of M, which is what makes fitting many layers at once cheap on a GPU (and,
with channels-last activations, on the CPU). Member i of a stack computes exactly what a
one-member stack with member i's weights computes.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import Registry


# --------------------------------------------------------------------------- building blocks
# Activations of a stack travel as (B, M·C, H, W): member m owns channels [m·C, (m+1)·C).
class EqConv2d(nn.Module):
    """M stacked convs with the equalised learning rate: N(0, 1) weights scaled by
    √(2/fan_in) at run time. x: (B, M·cin, H, W) → (B, M·cout, H', W')."""

    def __init__(self, members: int, cin: int, cout: int, k: int, padding: int = 0):
        super().__init__()
        self.members, self.padding = members, padding
        self.weight = nn.Parameter(torch.randn(members, cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(members, cout))
        self.scale = math.sqrt(2.0 / (cin * k * k))

    def forward(self, x):
        w = (self.weight * self.scale).flatten(0, 1)  # (M·cout, cin, k, k)
        return F.conv2d(x, w, self.bias.flatten(), padding=self.padding, groups=self.members)


class EqLinear(nn.Module):
    """M stacked linear layers with the equalised learning rate. x: (M, B, cin) → (M, B, cout)."""

    def __init__(self, members: int, cin: int, cout: int, gain: float = math.sqrt(2.0)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(members, cout, cin))
        self.bias = nn.Parameter(torch.zeros(members, cout))
        self.scale = gain / math.sqrt(cin)

    def forward(self, x):
        return torch.baddbmm(self.bias.unsqueeze(1), x, (self.weight * self.scale).transpose(1, 2))


def pixel_norm(x: torch.Tensor, members: int) -> torch.Tensor:
    """ProGAN's pixel norm: each member's feature vector at each pixel to unit average square.
    x: (B, M·C, H, W) → same shape."""
    b, mc, h, w = x.shape
    y = x.view(b, members, mc // members, h, w)
    return (y * torch.rsqrt(y.pow(2).mean(dim=2, keepdim=True) + 1e-8)).view(b, mc, h, w)


def minibatch_std(x: torch.Tensor, group: int = 4, members: int = 1) -> torch.Tensor:
    """Append, per member, the average over features of the per-group std as one extra channel.

    x: (B, M·C, H, W) → (B, M·(C + 1), H, W) (for M = 1: (B, C, H, W) → (B, C + 1, H, W)).
    """
    b, mc, h, w = x.shape
    c = mc // members
    g = min(group, b)
    while b % g:
        g -= 1
    y = x.reshape(g, -1, members, c, h, w)
    y = (y - y.mean(0)).pow(2).mean(0).add(1e-8).sqrt()  # (B/g, M, C, H, W)
    y = y.mean(dim=(2, 3, 4)).reshape(-1, members, 1, 1, 1).repeat(g, 1, 1, h, w)  # (B, M, 1, H, W)
    return torch.cat([x.reshape(b, members, c, h, w), y], 2).reshape(b, members * (c + 1), h, w)


def stack_members(make: Callable[[int], nn.Module], parts: Sequence[nn.Module]) -> nn.Module:
    """One M-member stack from M stacks (each of any size), members in order: every parameter
    and buffer concatenated along its leading (member) dimension."""
    out = make(sum(_members(p) for p in parts))
    states = [p.state_dict() for p in parts]
    out.load_state_dict({k: torch.cat([s[k] for s in states]) for k in states[0]})
    return out


def member_of(make: Callable[[int], nn.Module], stack: nn.Module, i: int) -> nn.Module:
    """Member ``i`` of a stack as a one-member stack (a copy)."""
    out = make(1)
    out.load_state_dict({k: v[i: i + 1].clone() for k, v in stack.state_dict().items()})
    return out.to(next(stack.parameters()).device)


def _members(stack: nn.Module) -> int:
    return next(stack.parameters()).shape[0]


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    # grouped convs ran ~1.5x faster channels-last than NCHW on the CPU (benchmarks/fit_speed.py)
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


# --------------------------------------------------------------------------- layer readings
# How C reads a layer output. A (N, D) output is taken for a sequence of N tokens of D
# features (a vision transformer's): when its last N − k tokens form a square h × h grid of
# patches, C reads them as a (D, h, h) map by the Table 4/5 rule and the k prefix tokens (CLS,
# registers) join the flattened map at the FC. ``fit.tokens`` picks the reading:
#   "auto"    the first k of TOKEN_PREFIXES (1, 0, 2, …, 8: a CLS token, none, registers) with
#             N − k = h² and h ≥ 2; a layout without one is refused, naming the other settings
#   "grid:K"  K prefix tokens, the rest a square grid (refused when it is not one)
#   "flat"    every token flattened into the FC (one FC of N·D inputs)
# (C, H, W) outputs are conv maps and (F,) outputs vectors whatever the setting; other ranks
# are flattened.
TOKEN_PREFIXES = (1, 0, 2, 3, 4, 5, 6, 7, 8)


class TokenLayoutError(ValueError):
    """A (N, D) layer output whose tokens do not form the grid the setting asks for."""


@dataclasses.dataclass(frozen=True)
class LayerReading:
    """How C reads a layer output of ``shape`` (without batch): ``kind`` is "map" (C, H, W),
    "vector" (F,), "grid" (N, D) tokens as a (D, h, w) map after ``prefix`` tokens, or "flat"."""

    kind: str
    shape: tuple[int, ...]
    prefix: int = 0
    grid: tuple[int, int] | None = None

    @property
    def map_shape(self) -> tuple[int, int, int] | None:
        """The (C, H, W) map the conv stages see, or None (FC only)."""
        if self.kind == "map":
            return tuple(self.shape)  # type: ignore[return-value]
        if self.kind == "grid":
            return (self.shape[1], *self.grid)  # type: ignore[misc]
        return None

    def describe(self) -> str:
        """``"token grid 8×8 + 1 prefix token (65 × 64)"``, ``"conv map (32, 30, 30)"`` …"""
        dims = " × ".join(map(str, self.shape))
        if self.kind == "grid":
            h, w = self.grid  # type: ignore[misc]
            return f"token grid {h}×{w} + {self.prefix} prefix token{'s' * (self.prefix != 1)} ({dims})"
        return {"map": "conv map", "vector": "vector", "flat": "flat"}[self.kind] + f" ({dims})"

    def as_dict(self) -> dict:
        """The record results.json keeps per layer."""
        return {"shape": list(self.shape), "read_as": self.kind,
                "grid": list(self.grid) if self.grid else None, "prefix_tokens": self.prefix}


def parse_tokens(setting: str) -> int | str:
    """``"auto"`` / ``"flat"`` as they are, ``"grid:K"`` → K; ValueError on anything else."""
    if setting in ("auto", "flat"):
        return setting
    head, _, k = setting.partition(":")
    if head != "grid" or not k.isdigit():
        raise ValueError(f"tokens must be auto, flat or grid:K (K prefix tokens ≥ 0), got {setting!r}")
    return int(k)


def _square_side(n: int) -> int | None:
    side = math.isqrt(n) if n > 0 else 0
    return side if side > 0 and side * side == n else None


def read_layer(shape: Sequence[int], tokens: str = "auto") -> LayerReading:
    """How C reads a layer output of ``shape`` under the ``tokens`` setting (see above).
    Raises :class:`TokenLayoutError` (one line naming the settings that read it) for a (N, D)
    output whose tokens form no square grid under the setting."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        return LayerReading("map", shape)
    if len(shape) == 1:
        return LayerReading("vector", shape)
    if len(shape) != 2:
        return LayerReading("flat", shape)
    how = parse_tokens(tokens)
    if how == "flat":
        return LayerReading("flat", shape)
    n, d = shape
    if how == "auto":
        for k in TOKEN_PREFIXES:
            side = _square_side(n - k)
            if side is not None and side >= 2:
                return LayerReading("grid", shape, k, (side, side))
        raise TokenLayoutError(
            f"output of shape ({n}, {d}) read as {n} tokens of {d} features: no {TOKEN_PREFIXES[1]}–"
            f"{TOKEN_PREFIXES[-1]} prefix tokens leave a square grid of patch tokens; set "
            f"fit.tokens=flat (one FC over all {n * d} values) or fit.tokens=grid:K (K prefix "
            "tokens, then a square grid)")
    side = _square_side(n - how)
    if side is None:
        raise TokenLayoutError(
            f"output of shape ({n}, {d}): fit.tokens={tokens} leaves {n - how} tokens, not a "
            "square grid; set fit.tokens=auto, flat or grid:K with another K")
    return LayerReading("grid", shape, how, (side, side))


# --------------------------------------------------------------------------- compression
def compression_plan(shape: Sequence[int], max_width: int = 512) -> list[int]:
    """Conv widths of the compression stages for a layer output of ``shape``.

    The rule reproduces Tables 4 and 5: for a (C, H, W) map, stages of 3×3 conv + 2×2
    average pooling while the side is above 5, the k-th stage (0-based) 2^(k+1)·C wide,
    capped at ``max_width``; vectors get no conv stage (FC only).
    MNIST SmallCNN: Conv1 (32, 30, 30) → [64, 128, 256]; Conv2 (32, 14, 14) → [64, 128];
    Conv3 (64, 12, 12) → [128, 256]; Conv4 (64, 5, 5) → [] (FC).
    """
    if len(shape) != 3:
        return []
    c, h, w = shape
    widths, side = [], min(h, w)
    while side > 5:
        widths.append(min(max_width, c * 2 ** (len(widths) + 1)))
        side //= 2
    return widths


def compression_stages(shape: Sequence[int], max_width: int = 512,
                       conv_small_maps: bool = False) -> list[tuple[int, bool]]:
    """The compression stages for a layer output of ``shape``, as ``(conv width, pooled)``:
    :func:`compression_plan`'s conv + 2×2 average pooling stages; with ``conv_small_maps``, a
    map already too small to pool (side ≤ 5) gets one 3×3 conv of min(2·C, ``max_width``)
    without pooling instead of none.

    Table 5 (CelebFaces VGG16 at 128 px) does this for Conv Block5 (512, 4, 4) → one 3×3
    conv, 512, then the FC; Table 4 (MNIST) does not: Conv4 (64, 5, 5) goes straight to the FC.
    """
    widths = compression_plan(shape, max_width)
    if not widths and conv_small_maps and len(shape) == 3:
        return [(min(max_width, 2 * shape[0]), False)]
    return [(w, True) for w in widths]


class Compressor(nn.Module):
    """C: a layer output (B, *shape) → a code (B, code_dim), by :func:`compression_stages`
    (Tables 4 and 5): 3×3 conv → LeakyReLU(0.2) [→ 2×2 average pooling] per stage, then FC.

    ``tokens``: how a (B, N, D) token layer is read (:func:`read_layer`): as a grid, the patch
    tokens go through the stages as a (B, D, h, w) map and the k prefix tokens (B, k·D) join
    the flattened map at the FC. ``width_mult`` scales the conv widths (the quick preset uses
    narrower stages); ``conv_small_maps``: Table 5's lone conv on a map too small to pool
    (Conv Block5).
    """

    def __init__(self, shape: Sequence[int], code_dim: int, width_mult: float = 1.0,
                 max_width: int = 512, conv_small_maps: bool = False, tokens: str = "auto"):
        super().__init__()
        self.in_shape = tuple(shape)
        self.reading = read_layer(shape, tokens)
        conv_in = self.reading.map_shape
        stages = [] if conv_in is None else [
            (max(8, int(w * width_mult)), pool)
            for w, pool in compression_stages(conv_in, max_width, conv_small_maps)]
        layers: list[nn.Module] = []
        if conv_in is not None:
            c, h, w = conv_in
            for width, pool in stages:
                layers += [nn.Conv2d(c, width, 3, padding=1), nn.LeakyReLU(0.2)]
                if pool:
                    layers.append(nn.AvgPool2d(2))
                    h, w = h // 2, w // 2
                c = width
            flat = c * h * w + self.reading.prefix * self.reading.shape[-1]  # grid: prefix tokens too
        else:
            flat = int(math.prod(shape))
        # the FC stays the last module of ``net`` (the keys of checkpoints before token grids)
        layers += [nn.Flatten(), nn.Linear(flat, code_dim)]
        self.net = nn.Sequential(*layers)
        self.stages = stages
        self.plan = [w for w, _ in stages]

    def forward(self, l):
        r = self.reading
        if r.kind != "grid":
            return self.net(l)
        b, (h, w) = l.shape[0], r.grid
        grid = l[:, r.prefix:].transpose(1, 2).reshape(b, -1, h, w)  # (B, D, h, w)
        feats = self.net[:-1](grid)  # conv stages, flattened: (B, F)
        return self.net[-1](torch.cat([feats, l[:, :r.prefix].flatten(1)], 1))  # (B, code_dim)


def generator_scales(image_size: int) -> int:
    """The number of progressive scales (4, 8, 16, … px) whose last one covers ``image_size``:
    32 → 4 (the paper's MNIST generators), 64 → 5, 128 → 6 (its CelebFaces generators);
    a side between two scales gets the larger one (28 → 4: 32 px, resized to 28)."""
    if image_size < 1:
        raise ValueError(f"image_size must be at least 1, got {image_size}")
    n = 1
    while 4 * 2 ** (n - 1) < image_size:
        n += 1
    return n


# --------------------------------------------------------------------------- progressive G / D
def _lrelu(x):
    return F.leaky_relu(x, 0.2)


class Generator(nn.Module):
    """M stacked progressive generators: codes (M, B, code_dim) → images (M, B, out_channels,
    R, R) in [0, 1].

    ``channels[s]`` is the width of scale s (resolution 4·2^s). ``forward(z, scale, alpha)``
    renders at scale ``scale``, fading in from the previous scale with weight ``alpha``.
    """

    def __init__(self, code_dim: int, channels: Sequence[int], out_channels: int = 1, members: int = 1):
        super().__init__()
        self.channels, self.members, self.out_channels = list(channels), members, out_channels
        m, c0 = members, channels[0]
        self.fc = EqLinear(m, code_dim, c0 * 16, gain=math.sqrt(2) / 4)
        self.blocks = nn.ModuleList([nn.ModuleList([EqConv2d(m, c0, c0, 3, 1), EqConv2d(m, c0, c0, 3, 1)])])
        for s in range(1, len(channels)):
            self.blocks.append(nn.ModuleList([EqConv2d(m, channels[s - 1], channels[s], 3, 1),
                                              EqConv2d(m, channels[s], channels[s], 3, 1)]))
        self.to_rgb = nn.ModuleList([EqConv2d(m, c, out_channels, 1) for c in channels])
        for t in self.to_rgb:
            t.scale = t.scale / math.sqrt(2)  # linear output layer: gain 1

    @property
    def num_scales(self) -> int:
        return len(self.channels)

    def resolution(self, scale: int) -> int:
        return 4 * 2 ** scale

    def forward(self, z: torch.Tensor, scale: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        scale = self.num_scales - 1 if scale is None else scale
        m, b = z.shape[0], z.shape[1]
        z = z * torch.rsqrt(z.pow(2).mean(dim=2, keepdim=True) + 1e-8)  # pixel norm of the code
        h = _lrelu(self.fc(z))  # (M, B, C0·16)
        h = _channels_last(h.view(m, b, self.channels[0], 4, 4).transpose(0, 1).reshape(b, -1, 4, 4))
        prev = None
        for s in range(scale + 1):
            if s > 0:
                prev = h
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            c1, c2 = self.blocks[s]
            h = pixel_norm(_lrelu(c1(pixel_norm(h, m) if s == 0 else h)), m)
            h = pixel_norm(_lrelu(c2(h)), m)
        out = self.to_rgb[scale](h)
        if scale > 0 and alpha < 1.0:
            skip = F.interpolate(self.to_rgb[scale - 1](prev), scale_factor=2, mode="nearest")
            out = alpha * out + (1 - alpha) * skip
        r = out.shape[-1]
        out = out.reshape(b, m, self.out_channels, r, r).transpose(0, 1)  # (M, B, C, R, R)
        return 0.5 + 0.5 * torch.tanh(out)


class Discriminator(nn.Module):
    """M stacked progressive discriminators mirroring :class:`Generator` (average-pool
    down-sampling, minibatch std before the last block).
    images (M, B, C, R, R), member m's batch for discriminator m → scores (M, B)."""

    def __init__(self, channels: Sequence[int], in_channels: int = 1, members: int = 1):
        super().__init__()
        self.channels, self.members = list(channels), members
        m = members
        self.from_rgb = nn.ModuleList([EqConv2d(m, in_channels, c, 1) for c in channels])
        self.blocks = nn.ModuleList([None])  # scale 0 is the final block below
        for s in range(1, len(channels)):
            self.blocks.append(nn.ModuleList([EqConv2d(m, channels[s], channels[s], 3, 1),
                                              EqConv2d(m, channels[s], channels[s - 1], 3, 1)]))
        c0 = channels[0]
        self.final_conv = EqConv2d(m, c0 + 1, c0, 3, 1)
        self.final_fc = EqLinear(m, c0 * 16, c0)
        self.out = EqLinear(m, c0, 1, gain=1.0)

    def forward(self, x: torch.Tensor, scale: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        scale = len(self.channels) - 1 if scale is None else scale
        m, b, c, r = x.shape[0], x.shape[1], x.shape[2], x.shape[-1]
        x = _channels_last(2 * x.transpose(0, 1).reshape(b, m * c, r, r) - 1)  # [0, 1] → [-1, 1]
        h = _lrelu(self.from_rgb[scale](x))
        for s in range(scale, 0, -1):
            c1, c2 = self.blocks[s]
            h = F.avg_pool2d(_lrelu(c2(_lrelu(c1(h)))), 2)
            if s == scale and alpha < 1.0:
                skip = _lrelu(self.from_rgb[s - 1](F.avg_pool2d(x, 2)))
                h = alpha * h + (1 - alpha) * skip
        h = _lrelu(self.final_conv(minibatch_std(h, members=m)))  # (B, M·C0, 4, 4)
        h = h.reshape(b, m, -1).transpose(0, 1)  # (M, B, C0·16)
        h = _lrelu(self.final_fc(h))
        return self.out(h).squeeze(2)


def to_resolution(x: torch.Tensor, size: int) -> torch.Tensor:
    """Real images at a GAN scale: average-pool down (or nearest up) to ``size`` px."""
    s = x.shape[-1]
    if s == size:
        return x
    if s > size:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=(size, size), mode="nearest")


def to_classifier(x_hat: torch.Tensor, size: int) -> torch.Tensor:
    """An explanation resized for the classifier (nearest up from a low scale, bilinear else)."""
    s = x_hat.shape[-1]
    if s == size:
        return x_hat
    if s < size and size % s == 0:
        return F.interpolate(x_hat, scale_factor=size // s, mode="nearest")
    return F.interpolate(x_hat, size=(size, size), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------- losses
def interpretability_loss(classifier: nn.Module, x_hat: torch.Tensor, target: torch.Tensor,
                          image_size: int | None = None) -> torch.Tensor:
    """L_I of Eq. 3–4 (as a loss to minimise): the cross-entropy of f(x̂) against f(x)'s label.

    x̂: (M, B, C, R, R), M members' explanations of the same B inputs (resized to the
    classifier's ``image_size`` and sent through f as one batch), or (B, C, H, W) for one;
    target: (B,). Returns (M,) per member, or a scalar for a 4-d x̂.
    """
    single = x_hat.dim() == 4
    xs = x_hat.unsqueeze(0) if single else x_hat
    m, b = xs.shape[:2]
    flat = xs.flatten(0, 1)
    if image_size is not None:
        flat = to_classifier(flat, image_size)
    logits = classifier(flat).float()
    li = F.cross_entropy(logits, target.repeat(m), reduction="none").view(m, b).mean(1)
    return li[0] if single else li


class GanLoss:
    """A GAN objective for stacks of M discriminators.

    ``d_loss(D, real, fake, scale, alpha, step)``: real (B, C, R, R) shared by all members,
    fake (M, B, C, R, R); returns the sum over members of their D losses (to backward) and
    ``{stat: (M,) detached tensor}``. ``g_loss(fake_scores (M, B))`` → (M,).
    """

    name = "base"

    def d_loss(self, D, real, fake, scale, alpha, step: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def g_loss(self, fake_scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def _per_member(real: torch.Tensor, members: int) -> torch.Tensor:
    """real (B, C, R, R) → (M, B, C, R, R), one (broadcast) copy per member."""
    return real.unsqueeze(0).expand(members, *real.shape)


GAN_LOSSES: Registry[Callable[[], GanLoss]] = Registry("GAN loss")


@GAN_LOSSES.register("ns-r1")
class NonSaturatingR1(GanLoss):
    """Non-saturating logistic loss with an R1 penalty (γ/2)·‖∇D(real)‖² on real images,
    applied lazily: every ``every``-th step, scaled by ``every`` (StyleGAN2's lazy
    regularisation; the double backward through D is the costliest part of a step)."""

    name = "ns-r1"

    def __init__(self, gamma: float = 1.0, every: int = 4):
        self.gamma, self.every = gamma, every

    def d_loss(self, D, real, fake, scale, alpha, step: int = 0):
        with_r1 = step % self.every == 0
        real = _per_member(real.detach(), fake.shape[0]).requires_grad_(with_r1)
        s_real, s_fake = D(real, scale, alpha), D(fake.detach(), scale, alpha)  # (M, B)
        per = F.softplus(-s_real).mean(1) + F.softplus(s_fake).mean(1)  # (M,)
        if not with_r1:
            return per.sum(), {"d_loss": per.detach()}
        (g,) = torch.autograd.grad(s_real.sum(), [real], create_graph=True)
        r1 = g.pow(2).flatten(2).sum(2).mean(1)  # (M,)
        total = (per + 0.5 * self.gamma * self.every * r1).sum()
        return total, {"d_loss": per.detach(), "r1": r1.detach()}

    def g_loss(self, fake_scores):
        return F.softplus(-fake_scores).mean(1)


@GAN_LOSSES.register("wgan-gp")
class WganGP(GanLoss):
    """WGAN-GP with ProGAN's drift term ε·E[D(real)²] (λ_gp = 10, ε = 0.001)."""

    name = "wgan-gp"

    def __init__(self, gp: float = 10.0, drift: float = 1e-3):
        self.gp, self.drift = gp, drift

    def d_loss(self, D, real, fake, scale, alpha, step: int = 0):
        fake = fake.detach()
        m, b = fake.shape[:2]
        real = _per_member(real.detach(), m)
        s_real, s_fake = D(real, scale, alpha), D(fake, scale, alpha)  # (M, B)
        wd = s_fake.mean(1) - s_real.mean(1)
        # interpolation weights from a CPU generator seeded by the step, the same for every
        # member: identical on every device, after a resume, stacked or not
        eps = torch.rand(1, b, 1, 1, 1, generator=torch.Generator().manual_seed(step)).to(real.device)
        mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (g,) = torch.autograd.grad(D(mix, scale, alpha).sum(), [mix], create_graph=True)
        gp = (g.flatten(2).norm(dim=2) - 1).pow(2).mean(1)
        per = wd + self.gp * gp + self.drift * s_real.pow(2).mean(1)
        return per.sum(), {"d_loss": wd.detach(), "gp": gp.detach()}

    def g_loss(self, fake_scores):
        return -fake_scores.mean(1)
