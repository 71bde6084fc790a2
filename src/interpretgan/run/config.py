"""The main job's settings (:class:`RunConfig`), presets and rules, and how they resolve into
the training and fit configs it runs with (:func:`resolve_run`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from ..data.config import DATASETS
from ..interpret.config import FIT_PRESETS, FitConfig, fit_for_image_size
from ..registry import Registry
from ..robust.config import TRAIN_PRESETS, TrainConfig, known_attack
from ..settings import (ConfigError, MAX_EXPLAIN_IMAGES, at_least, at_most, known, merge, need,
                        rules, validate)


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


@rules(RunConfig)
def _run_rules(cfg: RunConfig, p: str) -> None:
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
