"""The explainer loop: a batch of images through f_pre, each layer's C and G, and back into f
(Eq. 5's x̂_i = G(C(f_pre_i(x)))), giving f's label of every explanation."""
from __future__ import annotations

import torch
import torch.nn as nn

from .fit import member_features
from .gan import to_classifier
from ..runtime.devices import eval_mode, module_device


def explain_and_label(classifier: nn.Module, gans: dict, x: torch.Tensor, judge: nn.Module | None = None,
                      batch_size: int = 250) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """Explain ``x`` (N, C, H, W) with every member (layer, or layer and generator seed),
    x̂_i = G_i(C_i(f_pre_i(x))), and label the explanations: ``(by_f, by_judge)``, each
    ``{member: (N,) int64}`` on the CPU; ``by_judge`` holds a ``judge``'s labels of the same
    explanations (a classifier on the same device taking the same input size), None without
    one. Batches of ``batch_size`` images."""
    dev = module_device(classifier)
    size = x.shape[-1]
    by_f = {n: [] for n in gans}
    by_j = {n: [] for n in gans}
    with eval_mode(classifier):
        for s in range(0, len(x), batch_size):
            xb = x[s: s + batch_size].to(dev)
            feats = member_features(classifier, xb, list(gans))
            for n, lg in gans.items():
                with eval_mode(lg):
                    xh = to_classifier(lg.explain(feats[n]), size)
                by_f[n].append(classifier(xh).argmax(1).cpu())
                if judge is not None:
                    with eval_mode(judge):
                        by_j[n].append(judge(xh).argmax(1).cpu())
    empty = torch.zeros(0, dtype=torch.long)
    f_labels = {n: torch.cat(v) if v else empty for n, v in by_f.items()}
    if judge is None:
        return f_labels, None
    return f_labels, {n: torch.cat(v) if v else empty for n, v in by_j.items()}
