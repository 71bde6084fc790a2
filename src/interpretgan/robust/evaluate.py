"""Evaluate a classifier checkpoint: clean accuracy and robust accuracy per attack."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from ..data.splits import batches, checkpoint_data_config, load_split, num_batches
from ..models.loading import load_model
from .attacks import Attack, get_attack
from ..runtime.devices import eval_mode, module_device, resolve_device
from ..runtime.progress import progress_bar
from ..runtime.runs import RunLock, append_jsonl, write_json
from ..settings import MAX_BATCH, MAX_INT

log = logging.getLogger(__name__)


def evaluate_model(model: nn.Module, test_set, dataset: str, attacks: Sequence[str] = (),
                   batch_size: int = 500, seed: int = 0, progress: bool = True,
                   out_jsonl: Path | None = None) -> list[dict]:
    """One row for clean accuracy, then one per attack name (``pgd-40``, ``fgsm`` …)."""
    specs = [get_attack(a, dataset) for a in attacks]  # fail on a bad name before any work
    t0 = time.perf_counter()
    rows = [{"attack": "none", "accuracy": accuracy(model, test_set, batch_size, progress),
             "n": len(test_set), "seconds": time.perf_counter() - t0}]
    for spec in specs:
        t0 = time.perf_counter()
        acc = robust_accuracy(model, test_set, spec, batch_size, early_stop=True, seed=seed,
                              progress=progress)
        rows.append({"attack": spec.name, "eps": spec.eps, "alpha": spec.alpha, "steps": spec.steps,
                     "accuracy": acc, "n": len(test_set), "seconds": time.perf_counter() - t0})
    if out_jsonl is not None:
        for r in rows:
            append_jsonl(out_jsonl, r)
    return rows


def evaluate_checkpoint(path: str | Path, attacks: Sequence[str] = (), out_dir: str | Path | None = None,
                        dataset: str | None = None, model: str | None = None,
                        data_dir: str | None = None, subset: int | None = None,
                        batch_size: int = 500, seed: int = 0, progress: bool = True,
                        device: str | None = "auto", model_file: str | None = None,
                        **model_kwargs) -> list[dict]:
    """Load ``path`` (ours, a bare state_dict with ``model`` named, or one saved from or for
    the user's ``model_file``: :func:`~interpretgan.loading.load_model`) and evaluate it on
    ``device`` (``"auto"``: a GPU if there is one).

    Writes ``evaluation.json`` (and ``evaluation.jsonl``, a row per attack) into
    ``out_dir`` (default: the checkpoint's run folder).
    """
    for name, value, most in (("subset", subset, MAX_INT), ("batch_size", batch_size, MAX_BATCH)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
        if value is not None and value > most:
            raise ValueError(f"{name} must be at most {most:,}, got {value}")
    for a in attacks:  # a bad name (or pgd-0) fails before loading anything
        get_attack(a, dataset or "mnist")
    net = load_model(path, resolve_device(device), model_file=model_file, model=model, **model_kwargs)
    data = checkpoint_data_config(path, dataset, data_dir=data_dir, test_subset=subset)
    test_set = load_split(data, "test")
    out = Path(out_dir) if out_dir is not None else default_out(Path(path))
    rows = evaluate_model(net, test_set, data.dataset, attacks, batch_size, seed, progress)
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):  # refused inside a folder another command holds
        (out / "evaluation.jsonl").unlink(missing_ok=True)
        for r in rows:
            append_jsonl(out / "evaluation.jsonl", r)
        write_json(out / "evaluation.json", {"checkpoint": str(path), "dataset": data.dataset,
                                             "rows": rows})
    return rows


def default_out(ckpt: Path) -> Path:
    """Where ``evaluate`` writes by default: the checkpoint's run folder."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


@torch.no_grad()
def accuracy(model: nn.Module, ds, batch_size: int = 500, progress: bool = False) -> float:
    """Clean accuracy of ``model`` on dataset ``ds``."""

    correct = 0
    with eval_mode(model):
        for x, y in progress_bar(batches(ds, batch_size, device=module_device(model)),
                         total=num_batches(ds, batch_size),
                         enabled=progress, desc="clean"):
            correct += (model(x).argmax(1) == y).sum().item()
    return correct / len(ds)


def robust_accuracy(model: nn.Module, ds, attack: Attack, batch_size: int = 500,
                    early_stop: bool = True, seed: int = 0, progress: bool = False) -> float:
    """Accuracy on ``attack(model, x, y)`` over dataset ``ds`` (fixed random starts)."""

    gen = torch.Generator().manual_seed(seed)
    correct = 0
    for x, y in progress_bar(batches(ds, batch_size, device=module_device(model)),
                     total=num_batches(ds, batch_size),
                     enabled=progress, desc=attack.name):
        x_adv = attack(model, x, y, early_stop=early_stop, generator=gen)
        with torch.no_grad(), eval_mode(model):
            correct += (model(x_adv).argmax(1) == y).sum().item()
    return correct / len(ds)
