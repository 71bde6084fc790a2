"""Configs as dataclasses, with named presets.

A preset is a complete config; command-line options override single fields; the resolved
config is written to ``config.json`` in the run folder. :func:`merge` checks each value it
sets against the field's type and :func:`validate` checks every field's type and range
(known names, ε in (0, 1], epochs ≥ 1 …), so a bad setting fails in one line before any work.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

from .registry import Registry


@dataclass
class DataConfig:
    dataset: str = "mnist"
    data_dir: str | None = None
    cache_dir: str | None = None
    image_size: int = 32  # MNIST: 32 (padded, default) or 28
    train_subset: int | None = None  # use the first N of a fixed permutation
    test_subset: int | None = None
    augment: bool = False  # random crop (pad 4) + flip, for CIFAR-10
    verify: bool = True  # checksum the files (False: a deliberately modified CIFAR-10 copy)


@dataclass
class ModelConfig:
    name: str = "smallcnn"
    pool: str = "max"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Classifier training: natural, ATTA-1 TRADES, TRADES (PGD-k) or Madry PGD-AT."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: str = "natural"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_milestones: tuple[int, ...] = (5,)  # epochs after which lr *= lr_gamma
    lr_gamma: float = 0.1
    seed: int = 0
    eval_batch_size: int = 500
    # adversarial training (ignored by "natural")
    eps: float = 0.3
    step_size: float = 0.01  # per attack step (ATTA: per epoch)
    attack_steps: int = 40  # inner PGD steps for trades / pgd-at
    beta: float = 6.0  # TRADES
    atta_reset_every: int = 0  # 0: never (MNIST); ATTA resets CIFAR perturbations every 10
    atta_init: str = "normal"  # stored perturbations start as 0.001·N(0,1) ("normal") or U(−ε, ε)
    eval_attack: str | None = None  # e.g. "pgd-40" to log robust accuracy per epoch
    eval_attack_subset: int = 500
    eval_attack_every: int = 1  # robust accuracy every k epochs (0: only after the last)
    amp: str = "off"  # bf16 autocast: "auto" (where the hardware has bf16 units), "on", "off"
    # resume points inside an epoch (checkpoints/last.pt): every N batches (0: off) and every
    # S seconds of training (0: off); how a run is carried out, not what it computes
    checkpoint_every: int = 0
    checkpoint_every_s: float = 120.0


# Settings that say how a job is carried out, not what it computes: left out of cache keys and
# of the comparison with a checkpoint's saved config, so changing one never redoes work.
OPERATIONAL_FIELDS = frozenset({"checkpoint_every", "checkpoint_every_s"})


def result_config(cfg: Any) -> dict:
    """``dataclasses.asdict(cfg)`` without the :data:`OPERATIONAL_FIELDS` of its top level."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in OPERATIONAL_FIELDS}


class ConfigError(KeyError, ValueError):
    """A setting the config cannot take: an unknown field, a wrong type or a value out of range."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------- types
def _describe(hint: Any) -> str:
    """``int`` → "an integer", ``tuple[int, ...]`` → "a list of integers" …"""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        parts = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        return f"a list of {len(args)} {_plural(args[0])}"
    if origin is dict or hint is dict:
        return "an object (JSON {...})"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            type(None): "null"}.get(hint, getattr(hint, "__name__", str(hint)))


def _plural(hint: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings"}.get(hint, _describe(hint))


class _Mismatch(Exception):
    pass


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as type ``hint`` (an int for a float field becomes a float, a list for a
    tuple field a tuple); raises :class:`_Mismatch` where it does not fit."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is not type(None):
                try:
                    return _coerce(value, a)
                except _Mismatch:
                    pass
        raise _Mismatch
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _Mismatch
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise _Mismatch
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        if len(value) != len(args):
            raise _Mismatch
        return tuple(_coerce(v, a) for v, a in zip(value, args))
    if origin is dict or hint is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _Mismatch
        if len(args) == 2:
            return {k: _coerce(v, args[1]) for k, v in value.items()}
        return dict(value)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        raise _Mismatch
    return value  # a type this checker does not know: left to the code that uses it


def check_type(value: Any, hint: Any, name: str) -> Any:
    """``value`` converted to the field type ``hint``, or a :class:`ConfigError` such as
    ``fit.batch_size must be an integer, got 'abc'``."""
    try:
        return _coerce(value, hint)
    except _Mismatch:
        raise ConfigError(f"{name} must be {_describe(hint)}, got {value!r}") from None


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def merge(base: Any, overrides: dict[str, Any], prefix: str = "") -> Any:
    """Return a copy of dataclass ``base`` with (possibly nested, dotted) overrides applied.

    Each value is checked against its field's type (:func:`check_type`); an unknown field
    or a wrong type raises :class:`ConfigError` naming ``prefix`` + the field."""
    changes: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    names = {f.name for f in dataclasses.fields(base)}
    hints = _hints(type(base))
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head not in names:
            raise ConfigError(f"unknown setting {prefix}{key}: {type(base).__name__} has no field "
                              f"{head!r}; fields: " + ", ".join(sorted(names)))
        if dataclasses.is_dataclass(getattr(base, head)):
            if rest:
                nested.setdefault(head, {})[rest] = value
            elif isinstance(value, dict):
                nested.setdefault(head, {}).update(value)
            else:
                changes[head] = check_type(value, hints[head], prefix + head)
        elif rest:
            raise ConfigError(f"unknown setting {prefix}{key}: {prefix}{head} has no fields")
        else:
            changes[head] = check_type(value, hints[head], prefix + head)
    for head, sub in nested.items():
        changes[head] = merge(getattr(base, head), sub, f"{prefix}{head}.")
    return dataclasses.replace(base, **changes)


# --------------------------------------------------------------------------- validation
_RULES: dict[type, Callable[[Any, str], None]] = {}


def rules(cls: type) -> Callable:
    """Register the range rules of config class ``cls`` (``fn(cfg, prefix)``, raising
    :class:`ConfigError`); :func:`validate` runs them after the type checks."""
    def add(fn):
        _RULES[cls] = fn
        return fn
    return add


# Every integer setting is at most this (seeds are 32-bit; no count or size needs more), so a
# typo cannot overflow a C integer or ask for an allocation later; many fields have tighter
# bounds in their rules (epochs, batch sizes, generator seeds …).
MAX_INT = 2**32 - 1
MAX_EPOCHS = 100_000
MAX_BATCH = 65_536
MAX_GENERATOR_SEEDS = 100  # generators fitted per layer (each a full G/D pair)
MAX_EXPLAIN_IMAGES = 1_000  # rows of an explanation grid


def _bounded(value: Any, name: str) -> None:
    """Every integer in ``value`` (an int, or a list of them) is at most :data:`MAX_INT`."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    for v in items:
        if isinstance(v, int) and not isinstance(v, bool) and v > MAX_INT:
            raise ConfigError(f"{name} must be at most {MAX_INT} (2**32 - 1), got {v}")


def validate(cfg: Any, prefix: str = "") -> Any:
    """Check every field of config dataclass ``cfg`` (and its nested configs): its type, its
    range (every integer at most :data:`MAX_INT`) and the names it refers to. Returns
    ``cfg``; raises :class:`ConfigError` with one line naming ``prefix`` + the field."""
    hints = _hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate(value, f"{prefix}{f.name}.")
        else:
            _bounded(check_type(value, hints[f.name], prefix + f.name), prefix + f.name)
    rule = _RULES.get(type(cfg))
    if rule is not None:
        rule(cfg, prefix)
    return cfg


def need(ok: bool, name: str, what: str, value: Any) -> None:
    """Raise ``ConfigError("{name} must be {what}, got {value!r}")`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{name} must be {what}, got {value!r}")


def at_least(cfg: Any, prefix: str, lo: float, *fields: str, optional: bool = False) -> None:
    """Each of ``fields`` ≥ ``lo`` (or ``None`` when ``optional``)."""
    for f in fields:
        v = getattr(cfg, f)
        if v is None and optional:
            continue
        need(v >= lo, prefix + f, f"at least {lo}" + (" (or null)" if optional else ""), v)


def at_most(cfg: Any, prefix: str, hi: float, *fields: str) -> None:
    """Each of ``fields`` (a number, a list of numbers, or None) ≤ ``hi``."""
    for f in fields:
        v = getattr(cfg, f)
        for x in (v if isinstance(v, (tuple, list)) else (v,)):
            need(x is None or x <= hi, prefix + f, f"at most {hi:,}", v)


def positive(cfg: Any, prefix: str, *fields: str) -> None:
    for f in fields:
        v = getattr(cfg, f)
        need(v > 0, prefix + f, "greater than 0", v)


def fraction(cfg: Any, prefix: str, *fields: str, open_top: bool = False) -> None:
    """Each of ``fields`` in [0, 1] ([0, 1) with ``open_top``)."""
    for f in fields:
        v = getattr(cfg, f)
        need(0 <= v < 1 if open_top else 0 <= v <= 1, prefix + f,
             "in [0, 1)" if open_top else "in [0, 1]", v)


def known(name: str, value: Any, registry) -> None:
    """``value`` is a name in ``registry`` (a :class:`~interpretgan.registry.Registry`)."""
    if value not in registry:
        raise ConfigError(f"{name}: unknown {registry.kind} {value!r}; known: "
                          + ", ".join(registry.names()))


def one_of(name: str, value: Any, choices: typing.Iterable) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def known_attack(name: str, attack: str, dataset: str) -> None:
    """``attack`` parses as an attack name (``pgd-40`` …) with a threat model for ``dataset``."""
    from .attacks import get_attack

    try:
        get_attack(attack, dataset)
    except ValueError as e:  # UnknownNameError is a ValueError
        raise ConfigError(f"{name}: {e}") from None


def override(cfg: Any, **overrides: Any) -> Any:
    """``override(cfg, epochs=3, **{"data.train_subset": 1000})``; ``None`` values are ignored
    (unset command-line options). Use :func:`merge` to set a field to ``None``."""
    return merge(cfg, {k: v for k, v in overrides.items() if v is not None})


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``["batch_size=32", "g_channels=[32,16]", "gan_loss=wgan-gp"]`` → a dict for :func:`merge`;
    values are JSON when they parse as JSON (lists become tuples), else strings. NaN and
    infinities are kept as strings (so a number field rejects them)."""
    import json

    def no_constants(name: str) -> Any:
        raise ValueError(name)

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected KEY=VALUE, got {item!r}")
        try:
            value = json.loads(raw, parse_constant=no_constants)
        except ValueError:  # not JSON (json.JSONDecodeError is a ValueError): a string
            value = raw
        out[key.strip()] = tuple(value) if isinstance(value, list) else value
    return out


def from_dict(cls: type, d: dict[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from ``dataclasses.asdict`` output."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        ftype = f.type if not isinstance(f.type, str) else eval_type(cls, f.name)
        if dataclasses.is_dataclass(ftype) and isinstance(v, dict):
            v = from_dict(ftype, v)
        elif isinstance(v, list) and "tuple" in str(f.type):
            v = tuple(v)
        kwargs[f.name] = v
    return cls(**kwargs)


def same_config(saved: dict, cfg: Any) -> bool:
    """Whether a config saved as a dict equals ``cfg``, reading fields added since it was
    saved at their defaults (so adding an option does not invalidate old checkpoints)."""
    try:
        return result_config(from_dict(type(cfg), saved)) == result_config(cfg)
    except (TypeError, KeyError):
        return False


def eval_type(cls: type, name: str) -> Any:
    import typing

    return typing.get_type_hints(cls)[name]


TRAIN_PRESETS: Registry[TrainConfig] = Registry("training preset")

# The paper's MNIST natural schedule: 10 epochs, SGD(0.9), lr 0.01 then 0.001 after epoch 5.
TRAIN_PRESETS.register("mnist-natural", TrainConfig())
# A cheaper natural model: 3 epochs, lr 0.01 then 0.001 (a third of the paper's cost; its
# shallow-layer Acc_i is about half the 10-epoch model's: docs/fidelity.md).
TRAIN_PRESETS.register("mnist-natural-quick", TrainConfig(epochs=3, lr_milestones=(2,)))
# ATTA-1 + TRADES on MNIST. ATTA carries each example's perturbation across epochs and
# takes one step per epoch; with ATTA's 0.01 step it needs ~30 epochs to reach eps, so
# the fast schedule takes a larger per-epoch step (measured in docs/results.md).
TRAIN_PRESETS.register("mnist-atta-trades", TrainConfig(
    method="atta-trades", epochs=4, lr_milestones=(3,), step_size=0.1, eval_attack="pgd-40"))
# The quick main job's robust model: the same, in bf16 where the CPU/GPU has bf16 units (its
# PGD-40 accuracy matched fp32's: docs/results.md), robust accuracy logged after the last epoch.
TRAIN_PRESETS.register("mnist-atta-trades-quick", TrainConfig(
    method="atta-trades", epochs=4, lr_milestones=(3,), step_size=0.1, eval_attack="pgd-40",
    eval_attack_every=0, amp="auto"))
# ATTA's own MNIST schedule (60 epochs, lr drop at 55, step 0.01) for GPU users.
TRAIN_PRESETS.register("mnist-atta-trades-paper", TrainConfig(
    method="atta-trades", epochs=60, lr_milestones=(55,), step_size=0.01, eval_attack="pgd-40"))
TRAIN_PRESETS.register("mnist-trades", TrainConfig(
    method="trades", epochs=8, lr_milestones=(7,), step_size=0.01, attack_steps=40,
    eval_attack="pgd-40"))
TRAIN_PRESETS.register("mnist-pgd-at", TrainConfig(
    method="pgd-at", epochs=8, lr_milestones=(7,), step_size=0.01, attack_steps=40,
    eval_attack="pgd-40"))
_cifar = DataConfig(dataset="cifar10", augment=True)
TRAIN_PRESETS.register("cifar10-natural", TrainConfig(
    data=_cifar, model=ModelConfig("vgg16"), epochs=100, lr=0.1, weight_decay=5e-4,
    lr_milestones=(75, 90)))
# ATTA-1 TRADES on CIFAR-10 (ATTA's settings: eps 8/255 (0.031), step 0.007, reset every 10).
TRAIN_PRESETS.register("cifar10-atta-trades", TrainConfig(
    data=_cifar, model=ModelConfig("vgg16"), method="atta-trades", epochs=38, lr=0.1,
    weight_decay=5e-4, lr_milestones=(30, 36), eps=8 / 255, step_size=0.007, atta_reset_every=10,
    eval_attack="cifar-pgd-20"))
# The paper's CelebFaces gender classifier: VGG16 at 128 px, 7 epochs at lr 0.001 (Appendix C).
_celeba = DataConfig(dataset="celeba", image_size=128)
_celeba_vgg = ModelConfig("vgg16", kwargs={"num_classes": 2, "input_size": 128})
TRAIN_PRESETS.register("celeba-natural", TrainConfig(
    data=_celeba, model=_celeba_vgg, epochs=7, lr=0.001, lr_milestones=(), batch_size=64))
# The one-GPU CelebA run's classifier: 3 of those epochs, in bf16 where the GPU has bf16 units.
TRAIN_PRESETS.register("celeba-natural-quick", TrainConfig(
    data=_celeba, model=_celeba_vgg, epochs=3, lr=0.001, lr_milestones=(), batch_size=64,
    amp="auto"))
# A robust partner for the CelebA VGG16 (the paper interprets only the natural one): ATTA-1
# TRADES at the paper's CelebA budget ε = 2/255, for ``--set adversarial=celeba-atta-trades``.
TRAIN_PRESETS.register("celeba-atta-trades", TrainConfig(
    data=_celeba, model=_celeba_vgg, method="atta-trades", epochs=7, lr=0.001, lr_milestones=(),
    batch_size=64, eps=2 / 255, step_size=0.5 / 255, eval_attack="pgd-20", eval_attack_every=0,
    amp="auto"))


def train_preset_for(dataset: str, method: str) -> TrainConfig:
    """The default preset for ``(dataset, method)``, e.g. ``("mnist", "atta-trades")``."""
    return TRAIN_PRESETS.get(f"{dataset}-{method}")


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
    from .gan import generator_scales

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


@dataclass
class RunConfig:
    """The main job (``interpretgan run``): two classifiers (or, with ``adversarial`` None, the
    natural one alone, as the paper's CelebFaces setting), D*, generators, diagnosis, report."""

    dataset: str = "mnist"
    data_dir: str | None = None
    natural: str = "mnist-natural"  # training presets (the natural model: the paper's 10 epochs)
    adversarial: str | None = "mnist-atta-trades-quick"  # None: the natural classifier alone
    train_overrides: dict[str, Any] = field(default_factory=dict)  # applied to both
    fit: str = "quick"  # fit preset
    fit_overrides: dict[str, Any] = field(default_factory=dict)
    layers: tuple[str, ...] = ()  # empty: the model's default layers
    attack: str = "pgd-40"  # builds D* (every step on every sample)
    dstar_images: int | None = 2000  # None: the whole test set
    explain_images: int = 8
    seed: int = 0
    # input size of the classifiers (None: the training presets' size; for a user's model the
    # first the model accepts of the data set's native size and 32)
    image_size: int | None = None
    # (x - mean) / std in front of a user's model, which then still takes [0, 1] images:
    # (MEAN, STD) for every channel or (M1, …, Mc, S1, …, Sc) per channel
    normalize: tuple[float, ...] | None = None
    verify: bool = True  # checksum the data files (False: a deliberately modified CIFAR-10 copy)
    # control (a) for a user's model: an independent classifier's checkpoint (zoo or ours) that
    # judges the explanations (the two trained classifiers judge each other)
    judge: str | None = None
    # where a user's model's forward keeps its logits: "[i]" (a tuple's element), a dict key
    # or an attribute ("logits"); None: the output itself, a tuple's first element or "logits"
    output: str | None = None


RUN_PRESETS: Registry[RunConfig] = Registry("run preset")
# Two generator seeds per layer: the report shows how far Acc_i moves with the generator
# alone. Measured on 2 CPU cores: two seeds cost ≈ 1.7× one seed's fit (docs/results.md), and
# the whole job stays within its budget of 40 natural epochs.
RUN_PRESETS.register("quick", RunConfig(fit_overrides={"generator_seeds": (0, 1)}))
RUN_PRESETS.register("paper", RunConfig(natural="mnist-natural", adversarial="mnist-atta-trades-paper", fit="paper",
                                        dstar_images=None))
# The paper's CelebFaces setting: the natural VGG16 gender classifier at 128 px alone, attacked
# with PGD-20 (ε = 2/255), six-scale generators for its five conv blocks and three FC layers.
# "celeba": about an hour on one H100; "celeba-paper": the paper's schedule (several GPUs).
RUN_PRESETS.register("celeba", RunConfig(
    dataset="celeba", natural="celeba-natural-quick", adversarial=None, fit="celeba",
    attack="pgd-20", dstar_images=1000, explain_images=4))
RUN_PRESETS.register("celeba-paper", RunConfig(
    dataset="celeba", natural="celeba-natural", adversarial=None, fit="celeba-paper",
    attack="pgd-20", dstar_images=10000, explain_images=8))


# The run preset ``interpretgan run --dataset X`` starts from without ``--preset``.
DEFAULT_RUN_PRESETS = {"mnist": "quick", "celeba": "celeba"}


def run_preset_for(dataset: str | None) -> str:
    """The default run preset for ``dataset`` (``celeba`` for CelebA); ``quick`` for a data
    set without presets of its own (a user's model on CIFAR-10 or a folder)."""
    return DEFAULT_RUN_PRESETS.get(dataset, "quick")


# --------------------------------------------------------------------------- range rules
@rules(DataConfig)
def _data_rules(cfg: DataConfig, p: str) -> None:
    from .data import DATASETS

    known(p + "dataset", cfg.dataset, DATASETS)
    at_least(cfg, p, 1, "image_size")
    at_least(cfg, p, 1, "train_subset", "test_subset", optional=True)


@rules(ModelConfig)
def _model_rules(cfg: ModelConfig, p: str) -> None:
    from .models import MODELS, POOLS

    known(p + "name", cfg.name, MODELS)
    one_of(p + "pool", cfg.pool, POOLS)
    params = inspect.signature(MODELS.get(cfg.name)).parameters
    if not any(q.kind is q.VAR_KEYWORD for q in params.values()):
        for k in cfg.kwargs:
            if k not in params:
                raise ConfigError(f"{p}kwargs: {cfg.name} takes no argument {k!r}; it takes "
                                  + ", ".join(params))


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_image_memory(image_size: int, batch_size: int, name: str) -> None:
    """Refuse (one-line :class:`ConfigError`) an image size at which one batch of
    ``batch_size`` RGB images alone, as float32 (B, 3, S, S), would exceed this machine's
    memory: a lower bound on what the work needs, checked before any of it."""
    need_bytes = batch_size * 3 * image_size * image_size * 4
    mem = physical_memory()
    if mem is not None and need_bytes > mem:
        raise ConfigError(f"{name} {image_size} px: one batch of {batch_size} images takes "
                          f"{need_bytes / 2 ** 30:,.0f} GiB as float32, more than this machine's "
                          f"{mem / 2 ** 30:,.0f} GiB of memory; use a smaller --image-size")


@rules(TrainConfig)
def _train_rules(cfg: TrainConfig, p: str) -> None:
    from .precision import AMP_CHOICES
    from .training import TRAIN_METHODS

    known(p + "method", cfg.method, TRAIN_METHODS)
    at_least(cfg, p, 1, "epochs", "batch_size", "eval_batch_size", "attack_steps",
             "eval_attack_subset")
    at_least(cfg, p, 0, "momentum", "weight_decay", "beta", "atta_reset_every",
             "eval_attack_every", "seed", "checkpoint_every", "checkpoint_every_s")
    at_most(cfg, p, MAX_EPOCHS, "epochs", "attack_steps", "lr_milestones")
    at_most(cfg, p, MAX_BATCH, "batch_size", "eval_batch_size")
    positive(cfg, p, "lr", "lr_gamma", "step_size")
    for m in cfg.lr_milestones:
        need(m >= 0, p + "lr_milestones", "a list of epochs ≥ 0", cfg.lr_milestones)
    need(0 < cfg.eps <= 1, p + "eps", "in (0, 1] (images lie in [0, 1])", cfg.eps)
    one_of(p + "atta_init", cfg.atta_init, ("normal", "uniform"))
    one_of(p + "amp", cfg.amp, AMP_CHOICES)
    if cfg.eval_attack is not None:
        known_attack(p + "eval_attack", cfg.eval_attack, cfg.data.dataset)
    check_image_memory(cfg.data.image_size, max(cfg.batch_size, cfg.eval_batch_size),
                       p + "data.image_size")


@rules(FitConfig)
def _fit_rules(cfg: FitConfig, p: str) -> None:
    from .gan import GAN_LOSSES, parse_tokens
    from .precision import AMP_CHOICES

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


@rules(RunConfig)
def _run_rules(cfg: RunConfig, p: str) -> None:
    from .data import DATASETS

    known(p + "dataset", cfg.dataset, DATASETS)
    known(p + "natural", cfg.natural, TRAIN_PRESETS)
    if cfg.adversarial is not None:
        known(p + "adversarial", cfg.adversarial, TRAIN_PRESETS)
    known(p + "fit", cfg.fit, FIT_PRESETS)
    known_attack(p + "attack", cfg.attack, cfg.dataset)
    at_least(cfg, p, 1, "dstar_images", optional=True)
    at_least(cfg, p, 1, "explain_images")
    at_most(cfg, p, MAX_EXPLAIN_IMAGES, "explain_images")
    at_least(cfg, p, 0, "seed")
    at_least(cfg, p, 1, "image_size", optional=True)
    if cfg.normalize is not None:
        n = len(cfg.normalize)
        need(n >= 2 and n % 2 == 0, p + "normalize",
             "MEAN,STD or M1,…,Mc,S1,…,Sc (2 or 2 × channels numbers)", cfg.normalize)
        need(all(s > 0 for s in cfg.normalize[n // 2:]), p + "normalize",
             "standard deviations greater than 0", cfg.normalize)
    if cfg.judge is not None:
        need(Path(cfg.judge).is_file(), p + "judge", "an existing checkpoint file", cfg.judge)
    need(cfg.output is None or (isinstance(cfg.output, str) and cfg.output.strip() != ""),
         p + "output", "an index [i], a key or an attribute name", cfg.output)


@dataclass
class ResolvedRun:
    """The configs the main job runs with: the training configs and the fit config
    (``adversarial`` None: the natural classifier alone)."""

    natural: TrainConfig
    adversarial: TrainConfig | None
    fit: FitConfig


def resolve_run(cfg: RunConfig, own_model: bool = False) -> ResolvedRun:
    """Validate ``cfg`` and build the configs ``interpretgan run`` uses: each training preset
    with the run's seed, dataset, data folder and ``train_overrides``; the fit preset with the
    run's seed and ``fit_overrides``, its generator scales following the natural classifier's
    input size (:func:`fit_for_image_size`). Raises :class:`ConfigError` (one line) before any
    work, also where the run would train classifiers (not ``own_model``) from presets made
    for another data set while the run's data set has presets of its own (``--dataset celeba``
    with the MNIST presets)."""
    validate(cfg)
    trains = []
    for preset in (cfg.natural, cfg.adversarial):
        if preset is None:
            trains.append(None)
            continue
        base = TRAIN_PRESETS.get(preset)
        if not own_model and base.data.dataset != cfg.dataset:
            made_for = [n for n in RUN_PRESETS if RUN_PRESETS.get(n).dataset == cfg.dataset]
            if made_for:
                raise ConfigError(
                    f"training preset {preset} is for {base.data.dataset}, not {cfg.dataset}: "
                    f"for {cfg.dataset} use --preset {' or --preset '.join(made_for)}")
        t = merge(base, {"seed": cfg.seed, "data.dataset": cfg.dataset, "data.data_dir": cfg.data_dir})
        if not cfg.verify:
            t = merge(t, {"data.verify": False})
        if cfg.image_size is not None:
            t = merge(t, {"data.image_size": cfg.image_size})
        trains.append(validate(merge(t, cfg.train_overrides, "train."), "train."))
    fit = merge(merge(FIT_PRESETS.get(cfg.fit), {"seed": cfg.seed}), cfg.fit_overrides, "fit.")
    if not own_model:
        fit = fit_for_image_size(fit, trains[0].data.image_size)
    return ResolvedRun(trains[0], trains[1], validate(fit, "fit."))
