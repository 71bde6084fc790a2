"""The pooling robustness study (paper Section 5.2, Tables 2 and 3).

For every model × pool × seed: adversarially train (resumable, reused when finished),
evaluate under the paper's attacks on a fixed test subset (each result cached in the run
folder), then aggregate mean ± std over seeds and the paired avg − max difference.
``study.json`` holds everything; :mod:`interpretgan.report` turns it into a Markdown
table and a bar chart without retraining.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.config import DataConfig
from ..data.splits import batches, load_split
from ..models.loading import load_classifier
from ..models.zoo import MODELS, POOLS
from ..paper import PAPER_NUMBERS
from ..registry import Registry
from .attacks import THREAT_MODELS, get_attack, paper_attacks
from .config import TRAIN_PRESETS, known_attack, train_preset_for
from .evaluate import accuracy, robust_accuracy
from .methods import TRAIN_METHODS
from .training import train_classifier
from ..runtime.devices import module_device, resolve_device
from ..runtime.runs import read_json, write_json
from ..settings import ConfigError, at_least, known, merge, need, rules, validate

log = logging.getLogger(__name__)


@dataclass
class StudyConfig:
    dataset: str = "mnist"
    models: tuple[str, ...] = ("smallcnn",)
    pools: tuple[str, ...] = ("max", "avg")
    seeds: tuple[int, ...] = (0, 1, 2)
    method: str = "atta-trades"
    attacks: tuple[str, ...] = ()  # empty: the paper's columns for the dataset
    test_subset: int | None = 2000  # None: the whole test set
    autoattack: bool = False  # APGD-CE + APGD-T (torchattacks) on autoattack_subset
    autoattack_subset: int = 200
    data_dir: str | None = None
    verify: bool = True  # checksum the dataset files
    train_overrides: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields, dotted
    model_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)  # per model name

    def attack_names(self) -> list[str]:
        return list(self.attacks) or paper_attacks(self.dataset)


def study_train_config(cfg: StudyConfig, model: str, pool: str, seed: int):
    """The :class:`~interpretgan.config.TrainConfig` of one (model, pool, seed) run."""
    base = merge(train_preset_for(cfg.dataset, cfg.method), {
        "seed": seed, "model.name": model, "model.pool": pool,
        "model.kwargs": dict(cfg.model_kwargs.get(model, {})), "data.data_dir": cfg.data_dir,
        "data.verify": cfg.verify})
    return merge(base, cfg.train_overrides, "train.")


@rules(StudyConfig)
def _study_rules(cfg: StudyConfig, p: str) -> None:
    need(cfg.dataset in THREAT_MODELS, p + "dataset", f"one of {', '.join(THREAT_MODELS)}",
         cfg.dataset)
    known(p + "method", cfg.method, TRAIN_METHODS)
    known(p + "method", f"{cfg.dataset}-{cfg.method}", TRAIN_PRESETS)
    for name, values in (("models", cfg.models), ("pools", cfg.pools), ("seeds", cfg.seeds)):
        need(len(values) >= 1, p + name, "a non-empty list", values)
    for m in cfg.models:
        known(p + "models", m, MODELS)
    for pool in cfg.pools:
        need(pool in POOLS, p + "pools", f"a list of {' / '.join(POOLS)}", cfg.pools)
    need(all(s >= 0 for s in cfg.seeds), p + "seeds", "a list of integers ≥ 0", cfg.seeds)
    for a in cfg.attacks:
        known_attack(p + "attacks", a, cfg.dataset)
    at_least(cfg, p, 1, "test_subset", optional=True)
    at_least(cfg, p, 1, "autoattack_subset")
    unknown = set(cfg.model_kwargs) - set(cfg.models)
    if unknown:
        raise ConfigError(f"{p}model_kwargs names models the study does not train: {sorted(unknown)}")
    for model in cfg.models:  # the training settings each run will use
        for pool in cfg.pools:
            validate(study_train_config(cfg, model, pool, cfg.seeds[0]), "train.")


STUDY_PRESETS: Registry[StudyConfig] = Registry("study preset")
STUDY_PRESETS.register("mnist", StudyConfig())
STUDY_PRESETS.register("cifar10", StudyConfig(dataset="cifar10", models=("vgg16", "wrn-34-10"),
                                              test_subset=None))


def _run_name(model: str, pool: str, seed: int) -> str:
    return f"{model}-{pool}-s{seed}"


def autoattack_accuracy(model, ds, eps: float, n_classes: int, batch_size: int = 200,
                        seed: int = 0) -> float:
    """Accuracy under AutoAttack's gradient components: APGD-CE, then APGD-T (DLR) on the
    survivors (torchattacks' implementations; an optional dependency)."""
    try:  # an optional dependency, only for this column: imported here
        import torchattacks
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError("the AutoAttack column needs torchattacks: "
                           "pip install --no-deps torchattacks scipy requests") from e

    apgd = torchattacks.APGD(model, norm="Linf", eps=eps, steps=100, n_restarts=1, loss="ce", seed=seed)
    apgdt = torchattacks.APGDT(model, norm="Linf", eps=eps, steps=100, n_restarts=1,
                               n_classes=n_classes, seed=seed)
    correct = 0
    model.eval()
    for x, y in batches(ds, batch_size, device=module_device(model)):
        x1 = apgd(x, y)
        with torch.no_grad():
            ok = model(x1).argmax(1) == y
        if ok.any():
            x2 = apgdt(x[ok], y[ok])
            with torch.no_grad():
                correct += (model(x2).argmax(1) == y[ok]).sum().item()
    return correct / len(ds)


def evaluate_cached(run_dir: Path, ds, dataset: str, attacks: list[str], subset_tag: str,
                    autoattack_ds=None, n_classes: int = 10, progress: bool = True,
                    device: torch.device | str = "cpu") -> dict[str, float]:
    """Clean + per-attack accuracy of ``run_dir``'s final model, cached in ``study_eval.json``."""
    cache_path = run_dir / "study_eval.json"
    cache = read_json(cache_path) if cache_path.exists() else {}
    model = None
    out = {}
    for name in ["clean", *attacks, *(["autoattack"] if autoattack_ds is not None else [])]:
        key = f"{name}@{subset_tag}"
        if key not in cache:
            if model is None:
                model = load_classifier(run_dir / "checkpoints" / "final.pt", device=device)
            t0 = time.perf_counter()
            if name == "clean":
                acc = accuracy(model, ds)
            elif name == "autoattack":
                acc = autoattack_accuracy(model, autoattack_ds, THREAT_MODELS[dataset][0], n_classes)
            else:
                acc = robust_accuracy(model, ds, get_attack(name, dataset), progress=progress)
            cache[key] = {"accuracy": acc, "seconds": time.perf_counter() - t0}
            write_json(cache_path, cache)
            log.info("%s %s: %.2f%%", run_dir.name, name, 100 * acc)
        out[name] = cache[key]["accuracy"]
    return out


def summarize(runs: list[dict], cfg: StudyConfig) -> dict:
    """Mean ± std over seeds per (model, pool, attack) and the paired avg − max differences."""
    cols = ["clean", *cfg.attack_names(), *(["autoattack"] if cfg.autoattack else [])]
    summary: dict[str, Any] = {}
    for model in cfg.models:
        summary[model] = {}
        for pool in cfg.pools:
            summary[model][pool] = {}
            for col in cols:
                vals = [100 * r["accuracy"][col] for r in runs
                        if r["model"] == model and r["pool"] == pool and col in r["accuracy"]]
                if vals:
                    summary[model][pool][col] = {
                        "mean": statistics.fmean(vals),
                        "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals),
                        "values": vals}
        if {"max", "avg"} <= set(cfg.pools):
            diffs = {}
            for col in cols:
                by_seed = {}
                for r in runs:
                    if r["model"] == model and col in r["accuracy"]:
                        by_seed.setdefault(r["seed"], {})[r["pool"]] = 100 * r["accuracy"][col]
                d = [v["avg"] - v["max"] for v in by_seed.values() if {"avg", "max"} <= set(v)]
                if d:
                    mean = statistics.fmean(d)
                    std = statistics.stdev(d) if len(d) > 1 else float("nan")
                    t = mean / (std / math.sqrt(len(d))) if len(d) > 1 and std > 0 else float("nan")
                    diffs[col] = {"mean": mean, "std": std, "n": len(d), "t": t, "values": d}
            summary[model]["avg_minus_max"] = diffs
    return summary


def run_pooling_study(cfg: StudyConfig, root: str | Path, progress: bool = True,
                      device: str | torch.device | None = "auto") -> dict:
    """Train and evaluate every (model, pool, seed) of ``cfg`` under ``root``; returns and
    writes ``root/study.json``. Rerunning continues where a killed run stopped (also on
    another ``device``: ``"auto"`` takes a GPU if there is one)."""
    validate(cfg)  # every setting, before any work
    device = resolve_device(device)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    attacks = cfg.attack_names()
    data_cfg = DataConfig(dataset=cfg.dataset, data_dir=cfg.data_dir, test_subset=cfg.test_subset,
                          verify=cfg.verify)
    test = load_split(data_cfg, "test")
    aa_ds = test.subset(cfg.autoattack_subset) if cfg.autoattack else None
    tag = f"{cfg.test_subset or 'all'}"
    runs = []
    t_start = time.perf_counter()
    for seed in cfg.seeds:
        for model in cfg.models:
            for pool in cfg.pools:
                name = _run_name(model, pool, seed)
                tcfg = study_train_config(cfg, model, pool, seed)
                log.info("study: %s", name)
                metrics = train_classifier(tcfg, root / name, progress=progress, device=device)
                acc = evaluate_cached(root / name, test, cfg.dataset, attacks, tag, aa_ds,
                                      progress=progress, device=device)
                runs.append({"model": model, "pool": pool, "seed": seed, "run": name,
                             "accuracy": acc, "train_time_s": metrics.get("wall_time_s")})
                # std and t of a single seed are NaN, which the report reads as "undefined"
                write_json(root / "study.json", _study_doc(cfg, runs, t_start), allow_nan=True)
    return _study_doc(cfg, runs, t_start)


def _study_doc(cfg: StudyConfig, runs: list[dict], t_start: float) -> dict:
    return {"config": dataclasses.asdict(cfg), "runs": runs, "summary": summarize(runs, cfg),
            "paper": {m: PAPER_NUMBERS.get(f"{cfg.dataset}/{m}") for m in cfg.models},
            "elapsed_s": time.perf_counter() - t_start}
