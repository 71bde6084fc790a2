"""Explaining images with fitted generators, x̂_i = G_i(C_i(f_pre_i(x))) (Eq. 5), and f's
labels of the explanations: the package's one explain-then-classify loop. The fit's running
agreement, the diagnosis (Acc_i on D*), the explanation grids and :class:`~.explainer.Explainer`
all go through :func:`explain_batch` and :func:`explain_and_label`.

``gans``: ``{member: module with .explain(l, scale=None, alpha=1.0)}`` (one member per layer
and generator seed, :mod:`.members`), on the classifier's device. Images stay where they are
(the CPU as a rule) and go to the classifier's device a batch at a time.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn as nn

from .gan import to_classifier
from .members import member_features
from ..runtime.devices import eval_mode, module_device


def explain_batch(classifier: nn.Module, gans: Mapping[str, nn.Module], xb: torch.Tensor,
                  scale: int | None = None, alpha: float = 1.0) -> dict[str, torch.Tensor]:
    """The explanation of every image of ``xb`` (B, C, H, W) (on the classifier's device) by
    every member: ``{member: x̂ (B, C, H, W)}`` at the classifier's input size. ``scale``/
    ``alpha``: render at that scale of the progressive generator (the fit's running
    agreement); None: the last. The classifier and the generators are put in eval mode for
    the call and their modes restored."""
    size = xb.shape[-1]
    out = {}
    with eval_mode(classifier):
        feats = member_features(classifier, xb, list(gans))
        for n, lg in gans.items():
            with eval_mode(lg):
                out[n] = to_classifier(lg.explain(feats[n], scale, alpha), size)
    return out


@torch.no_grad()
def label_explanations(classifier: nn.Module, gans: Mapping[str, nn.Module], x: torch.Tensor,
                       judge: nn.Module | None = None, batch_size: int = 250, scale: int | None = None,
                       alpha: float = 1.0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None,
                                                    torch.Tensor]:
    """Explain ``x`` (N, C, H, W) with every member and label each explanation:
    ``(by_f, by_judge, fx)``: ``{member: (N,)}`` f's labels of the explanations, the same by
    ``judge`` (a classifier on the same device taking the same input size; None without
    one), and f's labels of ``x`` itself (N,), all int64 on the CPU, computed batch by batch
    (``batch_size`` images)."""
    dev = module_device(classifier)
    by_f = {n: [] for n in gans}
    by_j = {n: [] for n in gans}
    fx = []
    with eval_mode(classifier):
        for s in range(0, len(x), batch_size):
            xb = x[s: s + batch_size].to(dev)
            fx.append(classifier(xb).argmax(1).cpu())
            for n, xh in explain_batch(classifier, gans, xb, scale, alpha).items():
                by_f[n].append(classifier(xh).argmax(1).cpu())
                if judge is not None:
                    with eval_mode(judge):
                        by_j[n].append(judge(xh).argmax(1).cpu())
    empty = torch.zeros(0, dtype=torch.long)

    def cat(v: list) -> torch.Tensor:
        return torch.cat(v) if v else empty

    f_labels = {n: cat(v) for n, v in by_f.items()}
    return f_labels, ({n: cat(v) for n, v in by_j.items()} if judge is not None else None), cat(fx)


def explain_and_label(classifier: nn.Module, gans: Mapping[str, nn.Module], x: torch.Tensor,
                      judge: nn.Module | None = None,
                      batch_size: int = 250) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """Explain ``x`` (N, C, H, W) with every member and label the explanations:
    ``(by_f, by_judge)``, each ``{member: (N,) int64}`` on the CPU; ``by_judge`` holds a
    ``judge``'s labels of the same explanations, None without one (:func:`label_explanations`)."""
    by_f, by_judge, _ = label_explanations(classifier, gans, x, judge, batch_size)
    return by_f, by_judge


def agreement(classifier: nn.Module, gans: Mapping[str, nn.Module], x: torch.Tensor,
              image_size: int | None = None, scale: int | None = None, batch_size: int = 250,
              labels: torch.Tensor | None = None, alpha: float = 1.0) -> dict[str, float]:
    """Per member, the share of images with f(G(C(f_pre(x)))) = f(x) (or = ``labels`` (N,)).
    x: (N, C, H, W); ``image_size``: kept for callers of 0.1 (explanations always take x's
    size)."""
    by_f, _, fx = label_explanations(classifier, gans, x, batch_size=batch_size, scale=scale, alpha=alpha)
    ref = fx if labels is None else labels.cpu()
    return {n: (p == ref).sum().item() / len(x) for n, p in by_f.items()}
