"""Diagnosis (paper Section 5): the adversarial test set D*, per-layer accuracy and
vulnerability (Eq. 5), max-pooling index change, and the misclassification distribution
(Figure 7).

Acc_i = share of adversarial examples x* whose layer-i explanation x̂_i = G_i(C_i(f_pre_i(x*)))
is classified as the true label; Vul_1 = 1 − Acc_1, Vul_i = Acc_{i−1} − Acc_i.

Everything runs on the classifier's device (:func:`~interpretgan.devices.module_device`);
D* stays in CPU memory and is moved there a batch at a time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .progress import progress_bar
from .attacks import get_attack
from .data import batches, num_batches, subset_indices, take
from .devices import eval_mode, module_device
from .fitting import agreement
from .layers import capture, layer_labels, list_layers, resolve
from .runs import NonFiniteError, save_checkpoint


def dstar_indices(test_set, n: int | None) -> torch.Tensor:
    """The indices into ``test_set`` of D*'s ``n`` images, in D*'s order: the first ``n`` of
    a fixed permutation (seed 0), or the whole set in order for ``n`` None (:func:`build_dstar`
    picks its images with this)."""
    return subset_indices(len(test_set), n, seed=0)


def build_dstar(model: nn.Module, test_set, attack: str, dataset: str, n: int | None, seed: int,
                path: str | Path, batch_size: int = 500, progress: bool = True) -> dict:
    """D*: ``attack`` on the test images :func:`dstar_indices` picks, every step on every
    sample, on ``model``'s device (random starts from a CPU generator seeded with ``seed``).

    Saves (atomically) and returns, on the CPU, ``{"x", "x_adv"}`` (N, C, H, W) float images
    in [0, 1], ``{"y", "pred_clean", "pred_adv", "index"}`` (N,) and ``"attack"``.
    """
    idx = dstar_indices(test_set, n)
    ds = take(test_set, idx)
    atk = get_attack(attack, dataset)
    dev = module_device(model)
    gen = torch.Generator().manual_seed(seed)
    xs, advs, ys, pc, pa = [], [], [], [], []
    finite = []  # per batch, on the device: read once at the end
    for x, y in progress_bar(batches(ds, batch_size, device=dev), total=num_batches(ds, batch_size),
                     enabled=progress, desc=f"D* {attack}"):
        xa = atk(model, x, y, early_stop=False, generator=gen)
        with torch.no_grad(), eval_mode(model):
            clean, adv = model(x), model(xa)
            finite.append(torch.isfinite(clean).all() & torch.isfinite(adv).all())
            pc.append(clean.argmax(1).cpu())
            pa.append(adv.argmax(1).cpu())
        xs.append(x.cpu())
        advs.append(xa.cpu())
        ys.append(y.cpu())
    if not bool(torch.stack(finite).all()):
        raise NonFiniteError("the classifier's outputs on the test images are not all finite "
                             "(NaN or inf logits): nothing to diagnose")
    doc = {"x": torch.cat(xs), "x_adv": torch.cat(advs), "y": torch.cat(ys),
           "pred_clean": torch.cat(pc), "pred_adv": torch.cat(pa), "index": idx, "attack": attack}
    save_checkpoint(path, doc)
    return doc


def diagnose_model(model: nn.Module, gans: dict, dstar: dict, num_classes: int) -> dict:
    """Everything Section 5 reports for one model, as plain JSON. ``gans``: ``{layer: module
    with .explain}`` on ``model``'s device; ``dstar``: :func:`build_dstar`'s dict (CPU)."""
    x, xa, y = dstar["x"], dstar["x_adv"], dstar["y"]
    names = list(gans)
    acc_adv = layer_accuracy(model, gans, xa, y)
    acc_nat = layer_accuracy(model, gans, x, y)
    agree = agreement(model, gans, x, x.shape[-1])
    accs = [acc_adv[n] for n in names]
    vul = vulnerability(accs)
    vul_nat = vulnerability([acc_nat[n] for n in names])
    marked = large_vulnerability(vul)
    table = misclassification_table(y, dstar["pred_adv"], num_classes)
    return {
        "layers": names, "layer_labels": layer_labels(model, names),
        "clean_accuracy": (dstar["pred_clean"] == y).float().mean().item(),
        "adversarial_accuracy": (dstar["pred_adv"] == y).float().mean().item(),
        "n": len(y), "attack": dstar["attack"],
        "per_layer": [{"layer": n, "acc": acc_adv[n], "vul": v, "large_vul": m,
                       "acc_natural": acc_nat[n], "vul_natural": vn, "agreement_natural": agree[n]}
                      for n, v, m, vn in zip(names, vul, marked, vul_nat)],
        "maxpool_index_change": maxpool_index_change(model, x, xa),
        "misclassification": table.tolist(),
        "top_targets": top_targets(table),
    }


def vulnerability(accs: Sequence[float]) -> list[float]:
    """Eq. 5: ``[1 − Acc_1, Acc_1 − Acc_2, …, Acc_{L−1} − Acc_L]``."""
    accs = list(accs)
    return [1.0 - accs[0]] + [accs[i - 1] - accs[i] for i in range(1, len(accs))]


def large_vulnerability(vul: Sequence[float], frac: float = 0.4) -> list[bool]:
    """Mark layers whose Vul_i is at least ``frac`` × the average drop per layer
    (Σ Vul / L = (1 − Acc_L) / L). With frac = 0.4 this marks exactly Conv1, Conv2, Conv4
    and FC1 in both rows of the paper's Table 1, the layers its text calls vulnerable."""
    mean = sum(vul) / len(vul)
    return [v >= frac * mean and v > 0 for v in vul]


@torch.no_grad()
def layer_accuracy(classifier: nn.Module, gans: dict, x: torch.Tensor, y: torch.Tensor,
                   batch_size: int = 250) -> dict[str, float]:
    """Acc_i per layer: share of ``x`` (N, C, H, W) whose explanation f labels ``y`` (N,)."""
    return agreement(classifier, gans, x, x.shape[-1], labels=y, batch_size=batch_size)


def maxpool_layers(model: nn.Module, example: torch.Tensor) -> list[str]:
    """The layer names (:mod:`~interpretgan.layers`) of every ``nn.MaxPool2d`` call in a
    forward of ``example`` (B, C, H, W) on ``model``'s device."""
    with eval_mode(model):
        names = list_layers(model, example)
    return [n for n in names if isinstance(resolve(model, n).module, nn.MaxPool2d)]


def pool_indices(inp: torch.Tensor, pool: nn.MaxPool2d) -> torch.Tensor:
    """Arg-max position of every pooling window. inp: (B, C, H, W) → (B, C, H', W')."""
    _, idx = F.max_pool2d(inp, pool.kernel_size, pool.stride, pool.padding, pool.dilation,
                          ceil_mode=pool.ceil_mode, return_indices=True)
    return idx


def index_change(a: torch.Tensor, b: torch.Tensor, pool: nn.MaxPool2d) -> float:
    """Share of pooling windows whose arg-max differs between inputs ``a`` and ``b``."""
    return (pool_indices(a, pool) != pool_indices(b, pool)).float().mean().item()


@torch.no_grad()
def maxpool_index_change(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor,
                         batch_size: int = 500) -> dict[str, float]:
    """For every ``nn.MaxPool2d`` call of ``model``: the share of windows whose arg-max moves
    between natural ``x`` and adversarial ``x_adv`` (N, C, H, W; paper: 40.9 % and 18.1 % on
    MNIST). The pools' inputs are taken with :func:`~interpretgan.layers.capture`."""
    dev = module_device(model)
    if len(x) == 0:
        return {}
    names = maxpool_layers(model, x[:1].to(dev))
    if not names:
        return {}
    pools = {n: resolve(model, n).module for n in names}
    changed = {n: 0 for n in names}
    total = {n: 0 for n in names}
    with eval_mode(model):
        for s in range(0, len(x), batch_size):
            a = capture(model, x[s: s + batch_size].to(dev), names, inputs=True)
            b = capture(model, x_adv[s: s + batch_size].to(dev), names, inputs=True)
            for n, pool in pools.items():
                ia, ib = pool_indices(a[n], pool), pool_indices(b[n], pool)
                changed[n] += (ia != ib).sum().item()
                total[n] += ia.numel()
    return {n: changed[n] / total[n] for n in names if total[n]}


def misclassification_table(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """``counts[t, p]`` = number of samples of true class t predicted as p. (K, K) int64."""
    idx = y_true.long() * num_classes + y_pred.long()
    return torch.bincount(idx, minlength=num_classes ** 2).view(num_classes, num_classes)


def top_targets(counts: torch.Tensor) -> list[dict]:
    """Per true class, the most frequent wrong label and its share of that class's samples
    (paper: 39.3 % of adversarial 0s → 6, 39.5 % of 7s → 3)."""
    out = []
    for t in range(counts.shape[0]):
        row = counts[t].clone()
        n = int(row.sum())
        row[t] = -1
        p = int(row.argmax())
        out.append({"true": t, "top_target": p, "count": int(counts[t, p]),
                    "share": (int(counts[t, p]) / n) if n else 0.0,
                    "misclassified_share": (1 - int(counts[t, t]) / n) if n else 0.0})
    return out
