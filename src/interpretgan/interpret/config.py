"""InterpretGAN fitting settings (:class:`FitConfig`), their presets and rules."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from .gan import GAN_LOSSES, generator_scales, parse_tokens
from ..registry import Registry
from ..runtime.precision import AMP_CHOICES
from ..settings import (ConfigError, MAX_BATCH, MAX_GENERATOR_SEEDS, at_least, at_most, fraction,
                        known, need, one_of, positive, rules)


@dataclass
class FitConfig:
    """InterpretGAN fitting: one compression net + progressive G/D per layer."""

    layers: tuple[str, ...] = ()  # empty: the model's default layers
    code_dim: int = 128
    g_channels: tuple[int, ...] = (32, 32, 16, 8)  # width per scale (4, 8, 16, 32 px)
    d_channels: tuple[int, ...] = (32, 32, 16, 8)
    c_width_mult: float = 1.0  # compression conv widths × this (1.0: Tables 4/5's widths)
    # a map too small to pool (side ≤ 5) gets one 3×3 conv before the FC: Table 5 (Conv Block5);
    # Table 4 (MNIST Conv4) has none
    c_conv_small_maps: bool = False
    # a (N, D) token layer (a vision transformer's): "auto" reads the patch tokens as a square
    # grid after 1, 0, 2 … 8 prefix tokens (the first that fits), "grid:K" after K, "flat" as
    # one FC over all N·D values (gan.read_layer)
    tokens: str = "auto"
    steps_per_scale: tuple[int, ...] = (30, 30, 60, 360)
    fade_fraction: float = 0.5  # share of a new scale's steps spent fading it in
    # L_I-only warm-up (D not updated): the first ``warmup_fraction`` of each scale's steps
    # (``warmup_each_scale``, so D trains at every scale: the progressive game of the paper), or
    # of all steps (False; with the quick schedule that skipped D at 4, 8 and 16 px)
    warmup_fraction: float = 0.4
    warmup_each_scale: bool = True
    batch_size: int = 32
    lr: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.99)
    lam: float = 1.0  # λ of L_I
    ema_beta: float = 0.98  # moving average of C and G used for explanations (0: off)
    gan_loss: str = "ns-r1"
    train_subset: int | None = 20000
    eval_images: int = 1000  # held-out natural test images for agreement / realism
    ckpt_every: int = 100  # steps
    seed: int = 0  # data order and generator initialisation
    # generator seeds fitted per layer, together in one loop (one member per layer and seed):
    # seed g of layer L starts from member_seed(seed, "L#seed<g>") (g = 0: "L"), so a fit of
    # seeds (0, 1, 2) gives the generators of three fits of (0,), (1,) and (2,): exactly with
    # stack_layers="off" and amp="off"; stacked or under bf16 up to float rounding
    generator_seeds: tuple[int, ...] = (0,)
    amp: str = "auto"  # bf16 autocast: "auto" (where the hardware has bf16 units), "on", "off"
    # how a step is run (results equal up to float rounding; benchmarks/fit_speed.py measures them)
    # "on": all layers' G/D as one stacked network; "off": one per layer; "auto": stacked on a
    # GPU (where a step is launch-bound), and on a CPU for narrow G/D (≤ 64 channels), where
    # it measured faster (wide stacks measured slower there: docs/results.md)
    stack_layers: str = "auto"
    adam: str = "fused"  # "fused" (one kernel for all parameters), "foreach" or "loop"
    # agreement floor: a member (one generator seed of a layer) whose agreement with f on the
    # held-out images is below it after the scheduled steps keeps fitting at the last scale, for
    # at most max_extra_fraction × the scheduled steps; a layer with a seed still below it is
    # marked unreliable in the report and results.json (0: off; fitting.py, "agreement floor")
    min_agreement: float = 0.85
    max_extra_fraction: float = 0.5


def fit_for_image_size(cfg: FitConfig, image_size: int) -> FitConfig:
    """``cfg`` with as many generator scales as ``image_size`` needs
    (:func:`~interpretgan.gan.generator_scales`: 32 px → 4, 64 → 5, 128 → 6), so the last
    scale renders the classifier's input size, for any classifier (a user's model too).

    Fewer scales: the coarsest ones are kept, and the last scale keeps its own step count
    (its steps train at the full resolution). More scales: each added one is half as wide as
    the finest given (at least 8 channels) and gets the steps of the scale before the last;
    the last keeps its steps. ``cfg`` unchanged where the count already fits."""

    n, have = generator_scales(image_size), len(cfg.g_channels)
    if n == have:
        return cfg
    steps = cfg.steps_per_scale
    if n < have:
        g, d = cfg.g_channels[:n], cfg.d_channels[:n]
        steps = (*steps[: n - 1], steps[-1])
    else:
        extra = n - have
        g, d = list(cfg.g_channels), list(cfg.d_channels)
        for _ in range(extra):
            g.append(max(min(8, g[-1]), g[-1] // 2))
            d.append(max(min(8, d[-1]), d[-1] // 2))
        middle = steps[-2] if have > 1 else steps[-1]
        steps = (*steps[:-1], *([middle] * extra), steps[-1])
    return dataclasses.replace(cfg, g_channels=tuple(g), d_channels=tuple(d),
                               steps_per_scale=tuple(steps))


FIT_PRESETS: Registry[FitConfig] = Registry("fit preset")
# Sized by measurement on 2 CPU cores (docs/results.md): 480 steps of batch 32 per layer, most
# of them at 32 px, the first 40 % of each scale on L_I alone, Table 4's compression networks,
# explanations from the moving average of C/G.
FIT_PRESETS.register("quick", FitConfig())
# The paper's MNIST schedule: 6 epochs for each of the first three scales, 12 for the last,
# lr 0.001, on the full training set (60,000 / 64 = 938 steps an epoch).
FIT_PRESETS.register("paper", FitConfig(
    code_dim=512, g_channels=(256, 256, 128, 64), d_channels=(256, 256, 128, 64), c_width_mult=1.0,
    steps_per_scale=(6 * 938, 6 * 938, 6 * 938, 12 * 938), warmup_fraction=0.0, train_subset=None,
    batch_size=64, ema_beta=0.999, eval_images=10000, ckpt_every=500))
# The paper's CelebFaces generators (Appendix C): six scales, 4 → 128 px, two 3×3 convs per
# scale, 48,000 iterations for the first scale and 96,000 for each other, lr 0.001, ProGAN's
# widths (pytorch_GAN_zoo: 512 up to 32 px, then 256, 128) and batch size (16); Table 5's
# compression networks (full widths, Block5's lone conv). Meant for several GPUs.
FIT_PRESETS.register("celeba-paper", FitConfig(
    code_dim=512, g_channels=(512, 512, 512, 512, 256, 128),
    d_channels=(512, 512, 512, 512, 256, 128), c_width_mult=1.0, c_conv_small_maps=True,
    steps_per_scale=(48000, 96000, 96000, 96000, 96000, 96000), warmup_fraction=0.0,
    batch_size=16, ema_beta=0.999, train_subset=None, eval_images=2000, ckpt_every=1000))
# Sized for about an hour on one H100 (docs/results.md, "CelebA setting: expected cost"): the
# same six scales and Table 5's compression networks, narrower G/D, 9,000 steps of batch 16.
FIT_PRESETS.register("celeba", FitConfig(
    code_dim=256, g_channels=(256, 256, 128, 64, 32, 16), d_channels=(256, 256, 128, 64, 32, 16),
    c_width_mult=1.0, c_conv_small_maps=True, steps_per_scale=(1000, 1000, 1000, 1500, 1500, 3000),
    warmup_fraction=0.1, batch_size=16, ema_beta=0.995, train_subset=None, eval_images=1000,
    ckpt_every=250))


@rules(FitConfig)
def _fit_rules(cfg: FitConfig, p: str) -> None:
    known(p + "gan_loss", cfg.gan_loss, GAN_LOSSES)
    at_least(cfg, p, 1, "code_dim", "batch_size", "eval_images", "ckpt_every")
    at_most(cfg, p, MAX_BATCH, "batch_size", "code_dim", "g_channels", "d_channels")
    at_least(cfg, p, 0, "lam", "seed")
    at_least(cfg, p, 1, "train_subset", optional=True)
    positive(cfg, p, "c_width_mult", "lr")
    fraction(cfg, p, "fade_fraction", "warmup_fraction")
    fraction(cfg, p, "ema_beta", open_top=True)
    for b in cfg.betas:
        need(0 <= b < 1, p + "betas", "two numbers in [0, 1)", cfg.betas)
    for name in ("g_channels", "d_channels", "steps_per_scale"):
        v = getattr(cfg, name)
        need(len(v) >= 1 and all(c >= 1 for c in v), p + name, "a non-empty list of integers ≥ 1", v)
    need(len(cfg.d_channels) == len(cfg.g_channels), p + "d_channels",
         f"as long as g_channels ({len(cfg.g_channels)} scales)", cfg.d_channels)
    need(len(cfg.steps_per_scale) == len(cfg.g_channels), p + "steps_per_scale",
         f"as long as g_channels ({len(cfg.g_channels)} scales)", cfg.steps_per_scale)
    one_of(p + "amp", cfg.amp, AMP_CHOICES)
    one_of(p + "stack_layers", cfg.stack_layers, ("auto", "on", "off"))
    need(cfg.train_subset is None or cfg.train_subset >= cfg.batch_size, p + "train_subset",
         f"at least batch_size ({cfg.batch_size}) images", cfg.train_subset)
    need(len(set(cfg.layers)) == len(cfg.layers), p + "layers", "names without repeats", cfg.layers)
    gs = cfg.generator_seeds
    if len(gs) > MAX_GENERATOR_SEEDS:  # (the list itself would make a very long line)
        raise ConfigError(f"{p}generator_seeds must be at most {MAX_GENERATOR_SEEDS} seeds, "
                          f"got {len(gs)}")
    need(len(gs) >= 1 and all(g >= 0 for g in gs) and len(set(gs)) == len(gs), p + "generator_seeds",
         "a non-empty list of different integers ≥ 0", gs)
    one_of(p + "adam", cfg.adam, ("fused", "foreach", "loop"))
    fraction(cfg, p, "min_agreement")
    at_least(cfg, p, 0, "max_extra_fraction")
    try:
        parse_tokens(cfg.tokens)
    except ValueError:
        need(False, p + "tokens", "auto, flat or grid:K (K prefix tokens ≥ 0)", cfg.tokens)
