"""The diagnosis as one call (Section 5 of the paper): attack the images, explain the
adversarial ones at every layer, and read Acc_i / Vul_i (Eq. 5) with their intervals and
controls::

    d = diagnose(model, explainer, x, y, attack="pgd-40")
    d.table()      # one row per layer
    d.plot()       # matplotlib Figure: Acc_i and Vul_i per layer
    d.to_json("diagnosis.json")

``interpretgan run`` computes the same thing with the same functions (:func:`attack_set`
inside :func:`~.diagnose.build_dstar`, then :func:`~.diagnose.diagnose_model`); its
``diagnosis.json`` loads back as a :class:`Diagnosis` (:meth:`Diagnosis.load`).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn
from matplotlib.figure import Figure

from .diagnose import attack_set, diagnose_model
from ..data.splits import check_images
from ..runtime.devices import eval_mode, module_device
from ..runtime.runs import atomic_write_bytes, read_json

# The columns of :meth:`Diagnosis.table`, in order (fields of diagnose_model's per-layer rows).
TABLE_FIELDS = ("layer", "label", "acc", "acc_ci", "vul", "vul_ci", "large_vul", "acc_natural",
                "agreement_natural", "keeps_adversarial_label", "acc_judge", "acc_seeds")


@dataclasses.dataclass
class Diagnosis:
    """What Section 5 reports for one model: ``doc`` is :func:`~.diagnose.diagnose_model`'s
    JSON (per-layer rows in ``doc["per_layer"]``, the max-pool index change where the model
    pools, the misclassification table and its top targets)."""

    doc: dict

    @property
    def layers(self) -> list[str]:
        return list(self.doc["layers"])

    @property
    def acc(self) -> dict[str, float]:
        """Acc_i per layer (share of D* whose explanation f labels with the true label)."""
        return {r["layer"]: r["acc"] for r in self.doc["per_layer"]}

    @property
    def vul(self) -> dict[str, float]:
        """Vul_i per layer (Eq. 5: Vul_1 = 1 − Acc_1, Vul_i = Acc_{i−1} − Acc_i)."""
        return {r["layer"]: r["vul"] for r in self.doc["per_layer"]}

    @property
    def marked(self) -> list[str]:
        """The layers marked as largely vulnerable (:func:`~.diagnose.large_vulnerability_ci`)."""
        return [r["layer"] for r in self.doc["per_layer"] if r["large_vul"]]

    def table(self) -> list[dict]:
        """One dict per layer, in the model's order, with :data:`TABLE_FIELDS` (shares in
        [0, 1]; ``*_ci`` 95 % intervals ``[low, high]``; ``acc_judge`` None without a judge,
        ``acc_seeds`` only with several generator seeds)."""
        rows = []
        for r, label in zip(self.doc["per_layer"], self.doc.get("layer_labels") or self.layers):
            row = {**r, "label": label}
            rows.append({k: row[k] for k in TABLE_FIELDS if k in row})
        return rows

    def to_json(self, path: str | Path | None = None) -> str:
        """The diagnosis as JSON text; written (atomically) to ``path`` when given."""
        text = json.dumps(self.doc, indent=1)
        if path is not None:
            atomic_write_bytes(path, text.encode())
        return text

    @classmethod
    def load(cls, path: str | Path) -> "Diagnosis":
        """A diagnosis written by :meth:`to_json` or a run's ``<model>/diagnosis.json``."""
        return cls(read_json(path))

    def plot(self, title: str | None = None) -> Figure:
        """Acc_i (with its interval and each generator seed's) and Vul_i per layer, marked
        layers in dark red: a matplotlib Figure (shown inline in a notebook)."""
        fig = Figure(figsize=(6, 3.6))
        ax = fig.add_subplot()
        draw_acc_vul(ax, self.doc["per_layer"], self.doc.get("layer_labels") or self.layers,
                     title or f"explanations of D* ({self.doc['attack']})")
        fig.tight_layout()
        return fig

    def __repr__(self) -> str:
        rows = "; ".join(f"{r['label']} {100 * r['acc']:.1f}%" for r in self.table())
        return f"Diagnosis({self.doc['attack']}, n={self.doc['n']}: Acc_i {rows})"


def draw_acc_vul(ax, rows: list[dict], labels: list[str], title: str, paper: Mapping | None = None) -> None:
    """Acc_i and Vul_i (in %) of per-layer ``rows`` (``acc``, ``acc_ci``, ``vul``,
    ``large_vul``, optional ``acc_seeds``) as bars on ``ax``, with the paper's values
    (``{"acc": [...], "vul": [...]}`` in %) as markers when given."""
    xs = list(range(len(labels)))
    acc = [100 * r["acc"] for r in rows]
    err = [[a - 100 * r["acc_ci"][0] for a, r in zip(acc, rows)],
           [100 * r["acc_ci"][1] - a for a, r in zip(acc, rows)]] if all("acc_ci" in r for r in rows) else None
    ax.bar([x - 0.2 for x in xs], acc, 0.4, yerr=err, capsize=2, label="Acc_i (ours)", color="#1f77b4")
    seeds = [(x - 0.2, 100 * a) for x, r in zip(xs, rows) for a in r.get("acc_seeds", [])]
    if seeds:  # each generator seed's Acc_i beside the mean over seeds
        ax.scatter(*zip(*seeds), s=9, color="#0b3c5d", label="Acc_i per generator seed", zorder=3)
    ax.bar([x + 0.2 for x in xs], [100 * r["vul"] for r in rows], 0.4, label="Vul_i (ours)",
           color=["#d62728" if r["large_vul"] else "#ff9896" for r in rows])
    if paper and len(paper["acc"]) == len(labels):
        ax.scatter([x - 0.2 for x in xs], paper["acc"], marker="_", s=200, color="black",
                   label="paper Acc_i", zorder=3)
        ax.scatter([x + 0.2 for x in xs], paper["vul"], marker="x", s=25, color="black",
                   label="paper Vul_i", zorder=3)
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylabel("%")
    ax.axhline(0, color="gray", lw=0.5)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def diagnose(model: nn.Module, explainer, x: torch.Tensor, y: torch.Tensor, attack: str = "pgd-40",
             dataset: str = "mnist", seed: int = 0, judge: nn.Module | None = None,
             num_classes: int | None = None, batch_size: int = 500, progress: bool = True) -> Diagnosis:
    """Diagnose ``model`` with ``explainer``'s generators on images ``x`` (N, C, H, W) in
    [0, 1] with labels ``y`` (N,): D* = ``attack`` on them (every step on every sample, the
    threat model of ``dataset``: ε = 0.3 for MNIST, 8/255 for CIFAR-10 …; random starts
    seeded with ``seed``), then Acc_i / Vul_i with intervals and controls
    (:func:`~.diagnose.diagnose_model`). ``explainer``: an
    :class:`~interpretgan.interpret.explainer.Explainer` or ``{member: generator}``;
    ``judge``: an independent classifier for control (a). Runs on the model's device."""
    check_images(x)
    if not x.is_floating_point():
        raise ValueError(f"x must be float images in [0, 1], got {x.dtype} (divide uint8 images by 255)")
    if not isinstance(y, torch.Tensor) or y.shape != (len(x),) or y.is_floating_point():
        raise ValueError(f"y must be integer labels (N,) = ({len(x)},) for x, got "
                         f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}"
                         f"{' ' + str(y.dtype) if isinstance(y, torch.Tensor) else ''}")
    gans = getattr(explainer, "gans", explainer)
    if not gans:
        raise ValueError("the explainer has no generators: call fit() or Explainer.load() first")
    dev = module_device(model)
    if num_classes is None:
        with torch.no_grad(), eval_mode(model):
            num_classes = model(x[:1].to(dev)).shape[1]
    dstar = attack_set(model, x.cpu(), y.cpu(), attack, dataset, seed, batch_size, progress)
    return Diagnosis(diagnose_model(model, gans, dstar, num_classes, judge=judge))
