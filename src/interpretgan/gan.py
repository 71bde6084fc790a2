"""InterpretGAN networks and losses (paper Section 3, Appendix C).

For a layer output l = f_pre(x) a compression network C maps l to a code, a progressive
generator G maps the code to an explanation x̂ = G(C(l)) in [0, 1], and a progressive
discriminator D tells x̂ from real images. G and C minimise the GAN loss plus
λ·L_I, where L_I is the cross-entropy of f(x̂) against f(x)'s label (Eq. 3–4).

Progressive GAN parts follow Karras et al. (2018): equalised learning rate, pixel norm,
minibatch standard deviation, nearest up-sampling, two 3×3 convs per scale and a fade-in
of each new scale.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import Registry


# --------------------------------------------------------------------------- building blocks
class EqConv2d(nn.Module):
    """Conv2d with the equalised learning rate: N(0, 1) weights scaled by √(2/fan_in) at run time."""

    def __init__(self, cin: int, cout: int, k: int, padding: int = 0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = math.sqrt(2.0 / (cin * k * k))
        self.padding = padding

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class EqLinear(nn.Module):
    """Linear layer with the equalised learning rate."""

    def __init__(self, cin: int, cout: int, gain: float = math.sqrt(2.0)):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.scale = gain / math.sqrt(cin)

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias)


class PixelNorm(nn.Module):
    """Normalise each pixel's feature vector to unit average square (ProGAN)."""

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


def minibatch_std(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append the average over features of the per-group std as one extra channel.

    x: (B, C, H, W) → (B, C + 1, H, W).
    """
    b, c, h, w = x.shape
    g = min(group, b)
    while b % g:
        g -= 1
    y = x.reshape(g, -1, c, h, w)
    y = (y - y.mean(0)).pow(2).mean(0).add(1e-8).sqrt()  # (B/g, C, H, W)
    y = y.mean(dim=(1, 2, 3)).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], 1)


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


class Compressor(nn.Module):
    """C: a layer output (B, *shape) → a code (B, code_dim), by :func:`compression_plan`.

    ``width_mult`` scales the conv widths (the quick preset uses narrower stages).
    """

    def __init__(self, shape: Sequence[int], code_dim: int, width_mult: float = 1.0,
                 max_width: int = 512):
        super().__init__()
        self.in_shape = tuple(shape)
        plan = [max(8, int(w * width_mult)) for w in compression_plan(shape, max_width)]
        layers: list[nn.Module] = []
        if len(shape) == 3:
            c, h, w = shape
            for width in plan:
                layers += [nn.Conv2d(c, width, 3, padding=1), nn.LeakyReLU(0.2), nn.AvgPool2d(2)]
                c, h, w = width, h // 2, w // 2
            flat = c * h * w
        else:
            flat = int(math.prod(shape))
        layers += [nn.Flatten(), nn.Linear(flat, code_dim)]
        self.net = nn.Sequential(*layers)
        self.plan = plan

    def forward(self, l):
        return self.net(l)


# --------------------------------------------------------------------------- progressive G / D
def _lrelu(x):
    return F.leaky_relu(x, 0.2)


class Generator(nn.Module):
    """Progressive generator: code (B, code_dim) → image (B, out_channels, R, R) in [0, 1].

    ``channels[s]`` is the width of scale s (resolution 4·2^s). ``forward(z, scale, alpha)``
    renders at scale ``scale``, fading in from the previous scale with weight ``alpha``.
    """

    def __init__(self, code_dim: int, channels: Sequence[int], out_channels: int = 1):
        super().__init__()
        self.channels = list(channels)
        self.pn = PixelNorm()
        c0 = channels[0]
        self.fc = EqLinear(code_dim, c0 * 16, gain=math.sqrt(2) / 4)
        self.blocks = nn.ModuleList([nn.ModuleList([EqConv2d(c0, c0, 3, 1), EqConv2d(c0, c0, 3, 1)])])
        for s in range(1, len(channels)):
            self.blocks.append(nn.ModuleList([EqConv2d(channels[s - 1], channels[s], 3, 1),
                                              EqConv2d(channels[s], channels[s], 3, 1)]))
        self.to_rgb = nn.ModuleList([EqConv2d(c, out_channels, 1) for c in channels])
        for m in self.to_rgb:
            m.scale = m.scale / math.sqrt(2)  # linear output layer: gain 1

    @property
    def num_scales(self) -> int:
        return len(self.channels)

    def resolution(self, scale: int) -> int:
        return 4 * 2 ** scale

    def forward(self, z: torch.Tensor, scale: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        scale = self.num_scales - 1 if scale is None else scale
        h = _lrelu(self.fc(self.pn(z))).view(len(z), self.channels[0], 4, 4)
        prev = None
        for s in range(scale + 1):
            if s > 0:
                prev = h
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            c1, c2 = self.blocks[s]
            h = self.pn(_lrelu(c1(self.pn(h) if s == 0 else h)))
            h = self.pn(_lrelu(c2(h)))
        out = self.to_rgb[scale](h)
        if scale > 0 and alpha < 1.0:
            skip = F.interpolate(self.to_rgb[scale - 1](prev), scale_factor=2, mode="nearest")
            out = alpha * out + (1 - alpha) * skip
        return 0.5 + 0.5 * torch.tanh(out)


class Discriminator(nn.Module):
    """Progressive discriminator mirroring :class:`Generator` (average-pool down-sampling,
    minibatch std before the last block). image (B, C, R, R) → score (B,)."""

    def __init__(self, channels: Sequence[int], in_channels: int = 1):
        super().__init__()
        self.channels = list(channels)
        self.from_rgb = nn.ModuleList([EqConv2d(in_channels, c, 1) for c in channels])
        self.blocks = nn.ModuleList([None])  # scale 0 is the final block below
        for s in range(1, len(channels)):
            self.blocks.append(nn.ModuleList([EqConv2d(channels[s], channels[s], 3, 1),
                                              EqConv2d(channels[s], channels[s - 1], 3, 1)]))
        c0 = channels[0]
        self.final_conv = EqConv2d(c0 + 1, c0, 3, 1)
        self.final_fc = EqLinear(c0 * 16, c0)
        self.out = EqLinear(c0, 1, gain=1.0)

    def forward(self, x: torch.Tensor, scale: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        scale = len(self.channels) - 1 if scale is None else scale
        x = 2 * x - 1  # [0, 1] → [-1, 1]
        h = _lrelu(self.from_rgb[scale](x))
        for s in range(scale, 0, -1):
            c1, c2 = self.blocks[s]
            h = F.avg_pool2d(_lrelu(c2(_lrelu(c1(h)))), 2)
            if s == scale and alpha < 1.0:
                skip = _lrelu(self.from_rgb[s - 1](F.avg_pool2d(x, 2)))
                h = alpha * h + (1 - alpha) * skip
        h = _lrelu(self.final_conv(minibatch_std(h)))
        h = _lrelu(self.final_fc(h.flatten(1)))
        return self.out(h).squeeze(1)


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
def interpretability_loss(classifier: nn.Module, x_hat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_I (as a loss to minimise): CE of f(x̂) against f(x)'s label. x̂: (B, C, H, W)."""
    return F.cross_entropy(classifier(x_hat), target)


class GanLoss:
    """A GAN objective: ``d_loss(D, real, fake, scale, alpha)`` and ``g_loss(fake_scores)``."""

    name = "base"

    def d_loss(self, D, real, fake, scale, alpha, step: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def g_loss(self, fake_scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


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
        real = real.detach().requires_grad_(with_r1)
        s_real, s_fake = D(real, scale, alpha), D(fake.detach(), scale, alpha)
        loss = F.softplus(-s_real).mean() + F.softplus(s_fake).mean()
        if not with_r1:
            return loss, {"d_loss": loss.item()}
        (g,) = torch.autograd.grad(s_real.sum(), [real], create_graph=True)
        r1 = g.pow(2).flatten(1).sum(1).mean()
        return loss + 0.5 * self.gamma * self.every * r1, {"d_loss": loss.item(), "r1": r1.item()}

    def g_loss(self, fake_scores):
        return F.softplus(-fake_scores).mean()


@GAN_LOSSES.register("wgan-gp")
class WganGP(GanLoss):
    """WGAN-GP with ProGAN's drift term ε·E[D(real)²] (λ_gp = 10, ε = 0.001)."""

    name = "wgan-gp"

    def __init__(self, gp: float = 10.0, drift: float = 1e-3):
        self.gp, self.drift = gp, drift

    def d_loss(self, D, real, fake, scale, alpha, step: int = 0):
        fake = fake.detach()
        s_real, s_fake = D(real, scale, alpha), D(fake, scale, alpha)
        wd = s_fake.mean() - s_real.mean()
        eps = torch.rand(len(real), 1, 1, 1, device=real.device)
        mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (g,) = torch.autograd.grad(D(mix, scale, alpha).sum(), [mix], create_graph=True)
        gp = (g.flatten(1).norm(dim=1) - 1).pow(2).mean()
        loss = wd + self.gp * gp + self.drift * s_real.pow(2).mean()
        return loss, {"d_loss": wd.item(), "gp": gp.item()}

    def g_loss(self, fake_scores):
        return -fake_scores.mean()
