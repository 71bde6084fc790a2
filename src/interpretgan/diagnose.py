"""Diagnosis (paper Section 5): per-layer accuracy and vulnerability (Eq. 5), max-pooling
index change, and the misclassification distribution (Figure 7).

Acc_i = share of adversarial examples x* whose layer-i explanation x̂_i = G_i(C_i(f_pre_i(x*)))
is classified as the true label; Vul_1 = 1 − Acc_1, Vul_i = Acc_{i−1} − Acc_i.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attacks import eval_mode


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
    from .fitting import agreement

    return agreement(classifier, gans, x, x.shape[-1], labels=y, batch_size=batch_size)


def _maxpool_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    pools = {n: m for n, m in model.named_modules() if isinstance(m, nn.MaxPool2d)}
    got: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for n, m in pools.items():
            handles.append(m.register_forward_hook(
                lambda mod, inp, out, n=n: got.__setitem__(n, inp[0].detach())))
        with torch.no_grad(), eval_mode(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return got


def pool_indices(inp: torch.Tensor, pool: nn.MaxPool2d) -> torch.Tensor:
    """Arg-max position of every pooling window. inp: (B, C, H, W) → (B, C, H', W')."""
    _, idx = F.max_pool2d(inp, pool.kernel_size, pool.stride, pool.padding, pool.dilation,
                          ceil_mode=pool.ceil_mode, return_indices=True)
    return idx


def index_change(a: torch.Tensor, b: torch.Tensor, pool: nn.MaxPool2d) -> float:
    """Share of pooling windows whose arg-max differs between inputs ``a`` and ``b``."""
    return (pool_indices(a, pool) != pool_indices(b, pool)).float().mean().item()


def maxpool_index_change(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor,
                         batch_size: int = 500) -> dict[str, float]:
    """For every ``nn.MaxPool2d`` of ``model``: the share of windows whose arg-max moves
    between natural ``x`` and adversarial ``x_adv`` (paper: 40.9 % and 18.1 % on MNIST)."""
    pools = {n: m for n, m in model.named_modules() if isinstance(m, nn.MaxPool2d)}
    changed = {n: 0.0 for n in pools}
    total = {n: 0 for n in pools}
    for s in range(0, len(x), batch_size):
        a = _maxpool_inputs(model, x[s: s + batch_size])
        b = _maxpool_inputs(model, x_adv[s: s + batch_size])
        for n, pool in pools.items():
            if n in a:
                ia, ib = pool_indices(a[n], pool), pool_indices(b[n], pool)
                changed[n] += (ia != ib).sum().item()
                total[n] += ia.numel()
    return {n: changed[n] / total[n] for n in pools if total[n]}


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
