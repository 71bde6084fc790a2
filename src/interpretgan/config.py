"""Configs as dataclasses, with named presets.

A preset is a complete config; command-line options override single fields; the resolved
config is written to ``config.json`` in the run folder.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

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


class ConfigError(KeyError, ValueError):
    """An override names a field the config does not have."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def merge(base: Any, overrides: dict[str, Any]) -> Any:
    """Return a copy of dataclass ``base`` with (possibly nested, dotted) overrides applied."""
    changes: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    names = {f.name for f in dataclasses.fields(base)}
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head not in names:
            raise ConfigError(f"{type(base).__name__} has no field {head!r}; fields: "
                              + ", ".join(sorted(names)))
        if rest:
            nested.setdefault(head, {})[rest] = value
        elif dataclasses.is_dataclass(getattr(base, head)) and isinstance(value, dict):
            nested.setdefault(head, {}).update(value)
        else:
            changes[head] = value
    for head, sub in nested.items():
        changes[head] = merge(getattr(base, head), sub)
    return dataclasses.replace(base, **changes)


def override(cfg: Any, **overrides: Any) -> Any:
    """``override(cfg, epochs=3, **{"data.train_subset": 1000})``; ``None`` values are ignored
    (unset command-line options). Use :func:`merge` to set a field to ``None``."""
    return merge(cfg, {k: v for k, v in overrides.items() if v is not None})


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``["batch_size=32", "g_channels=[32,16]", "gan_loss=wgan-gp"]`` → a dict for :func:`merge`;
    values are JSON when they parse as JSON (lists become tuples), else strings."""
    import json

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
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
        return dataclasses.asdict(from_dict(type(cfg), saved)) == dataclasses.asdict(cfg)
    except (TypeError, KeyError):
        return False


def eval_type(cls: type, name: str) -> Any:
    import typing

    return typing.get_type_hints(cls)[name]


TRAIN_PRESETS: Registry[TrainConfig] = Registry("training preset")

# The paper's MNIST natural schedule: 10 epochs, SGD(0.9), lr 0.01 then 0.001 after epoch 5.
TRAIN_PRESETS.register("mnist-natural", TrainConfig())
# The quick main job's natural model: 3 epochs, lr 0.01 then 0.001 (a third of the paper's cost).
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
TRAIN_PRESETS.register("celeba-natural", TrainConfig(
    data=DataConfig(dataset="celeba", image_size=128), model=ModelConfig("vgg16", kwargs={
        "num_classes": 2, "input_size": 128}), epochs=7, lr=0.001, lr_milestones=(), batch_size=64))


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
    c_width_mult: float = 0.5  # compression conv widths × this (Tables 4/5 at 1.0)
    steps_per_scale: tuple[int, ...] = (30, 30, 60, 360)
    fade_fraction: float = 0.5  # share of a new scale's steps spent fading it in
    warmup_fraction: float = 0.4  # first share of all steps: L_I only, D not updated
    batch_size: int = 32
    lr: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.99)
    lam: float = 1.0  # λ of L_I
    ema_beta: float = 0.98  # moving average of C and G used for explanations (0: off)
    gan_loss: str = "ns-r1"
    train_subset: int | None = 20000
    eval_images: int = 1000  # held-out natural test images for agreement / realism
    ckpt_every: int = 100  # steps
    seed: int = 0
    amp: str = "auto"  # bf16 autocast: "auto" (where the hardware has bf16 units), "on", "off"
    # how a step is run (results equal up to float rounding; benchmarks/fit_speed.py measures them)
    group_layers: bool = True  # all layers' G/D as one stacked network (False: one per layer)
    adam: str = "fused"  # "fused" (one kernel for all parameters), "foreach" or "loop"


FIT_PRESETS: Registry[FitConfig] = Registry("fit preset")
# Sized by measurement on 2 CPU cores (docs/results.md): 480 steps of batch 32 per layer, most
# of them at 32 px, the first 40 % on L_I alone, explanations from the moving average of C/G.
FIT_PRESETS.register("quick", FitConfig())
# The paper's MNIST schedule: 6 epochs for each of the first three scales, 12 for the last,
# lr 0.001, on the full training set (60,000 / 64 = 938 steps an epoch).
FIT_PRESETS.register("paper", FitConfig(
    code_dim=512, g_channels=(256, 256, 128, 64), d_channels=(256, 256, 128, 64), c_width_mult=1.0,
    steps_per_scale=(6 * 938, 6 * 938, 6 * 938, 12 * 938), warmup_fraction=0.0, train_subset=None,
    batch_size=64, ema_beta=0.999, eval_images=10000, ckpt_every=500))


@dataclass
class RunConfig:
    """The main job (``interpretgan run``): two classifiers, D*, generators, diagnosis, report."""

    dataset: str = "mnist"
    data_dir: str | None = None
    natural: str = "mnist-natural-quick"  # training presets
    adversarial: str = "mnist-atta-trades-quick"
    train_overrides: dict[str, Any] = field(default_factory=dict)  # applied to both
    fit: str = "quick"  # fit preset
    fit_overrides: dict[str, Any] = field(default_factory=dict)
    layers: tuple[str, ...] = ()  # empty: the model's default layers
    attack: str = "pgd-40"  # builds D* (every step on every sample)
    dstar_images: int | None = 2000  # None: the whole test set
    explain_images: int = 8
    seed: int = 0


RUN_PRESETS: Registry[RunConfig] = Registry("run preset")
RUN_PRESETS.register("quick", RunConfig())
RUN_PRESETS.register("paper", RunConfig(natural="mnist-natural", adversarial="mnist-atta-trades-paper", fit="paper",
                                        dstar_images=None))
