"""Diagnosis (paper Section 5): the adversarial test set D*, per-layer accuracy and
vulnerability (Eq. 5), max-pooling index change, and the misclassification distribution
(Figure 7).

Acc_i = share of adversarial examples x* whose layer-i explanation x̂_i = G_i(C_i(f_pre_i(x*)))
is classified as the true label; Vul_1 = 1 − Acc_1, Vul_i = Acc_{i−1} − Acc_i.

Every share comes with a 95 % interval (:func:`wilson_interval`; Vul_i: :func:`vul_intervals`,
paired over the same images), and two controls: Acc_i as judged by an independent classifier
(``acc_judge``) and the share of explanations that keep f's adversarial label
(``keeps_adversarial_label``).

Everything runs on the classifier's device (:func:`~interpretgan.devices.module_device`);
D* stays in CPU memory and is moved there a batch at a time.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data.sources import subset_indices
from ..data.splits import balanced_order, dataset_labels, images_at, take
from ..interpret.explaining import explain_and_label
from ..interpret.members import members_by_layer
from ..interpret.layers import capture, layer_labels, list_layers, resolve
from ..robust.attacks import get_attack
from ..runtime.devices import eval_mode, module_device
from ..runtime.progress import progress_bar
from ..runtime.runs import NonFiniteError, save_checkpoint

log = logging.getLogger(__name__)


def dstar_indices(test_set, n: int | None) -> torch.Tensor:
    """The indices into ``test_set`` of D*'s ``n`` images, in D*'s order: the first ``n`` of
    a fixed permutation (seed 0); for ``n`` None (or at least the set's size) the whole set,
    drawn by a seeded shuffle balanced by class (:func:`~interpretgan.data.balanced_order`),
    not in file order. :func:`build_dstar` picks its images with this."""
    if n is not None and n < len(test_set):
        return subset_indices(len(test_set), n, seed=0)
    return balanced_order(dataset_labels(test_set), seed=0)


def build_dstar(model: nn.Module, test_set, attack: str, dataset: str, n: int | None, seed: int,
                path: str | Path, batch_size: int = 500, progress: bool = True) -> dict:
    """D*: :func:`attack_set` on the test images :func:`dstar_indices` picks, saved
    (atomically) to ``path``; returns the set with ``"index"`` (N,), the images' indices
    into ``test_set``."""
    idx = dstar_indices(test_set, n)
    x, y = images_at(take(test_set, idx), torch.arange(len(idx)))
    adv = attack_set(model, x, y, attack, dataset, seed, batch_size, progress)
    doc = {**{k: v for k, v in adv.items() if k != "attack"}, "index": idx, "attack": attack}
    save_checkpoint(path, doc)
    return doc


def attack_set(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: str, dataset: str = "mnist",
               seed: int = 0, batch_size: int = 500, progress: bool = True) -> dict:
    """An adversarial set: ``attack`` (a name of :func:`~interpretgan.attacks.get_attack`, its
    threat model from ``dataset``) on images ``x`` (N, C, H, W) in [0, 1] with labels ``y``
    (N,), every step on every sample, on ``model``'s device, in batches of ``batch_size``
    (random starts from a CPU generator seeded with ``seed``).

    Returns, on the CPU, ``{"x", "x_adv"}`` (N, C, H, W) float images in [0, 1],
    ``{"y", "pred_clean", "pred_adv"}`` (N,) and ``"attack"``."""
    atk = get_attack(attack, dataset)
    dev = module_device(model)
    gen = torch.Generator().manual_seed(seed)
    advs, pc, pa = [], [], []
    finite = []  # per batch, on the device: read once at the end
    starts = range(0, len(x), batch_size)
    for s in progress_bar(starts, total=len(starts), enabled=progress, desc=f"D* {attack}"):
        xb, yb = x[s: s + batch_size].to(dev), y[s: s + batch_size].to(dev)
        xa = atk(model, xb, yb, early_stop=False, generator=gen)
        with torch.no_grad(), eval_mode(model):
            clean, adv = model(xb), model(xa)
            finite.append(torch.isfinite(clean).all() & torch.isfinite(adv).all())
            pc.append(clean.argmax(1).cpu())
            pa.append(adv.argmax(1).cpu())
        advs.append(xa.cpu())
    if finite and not bool(torch.stack(finite).all()):
        raise NonFiniteError("the classifier's outputs on the test images are not all finite "
                             "(NaN or inf logits): nothing to diagnose")
    empty = torch.zeros(0, dtype=torch.long)
    return {"x": x.cpu(), "x_adv": torch.cat(advs) if advs else x.cpu().clone(), "y": y.cpu().long(),
            "pred_clean": torch.cat(pc) if pc else empty, "pred_adv": torch.cat(pa) if pa else empty,
            "attack": attack}


def diagnose_model(model: nn.Module, gans: dict, dstar: dict, num_classes: int,
                   judge: nn.Module | None = None, z: float = 1.96) -> dict:
    """Everything Section 5 reports for one model, as plain JSON. ``gans``: ``{member: module
    with .explain}`` on ``model``'s device, one member per layer and generator seed
    (:func:`~interpretgan.fitting.member_key`); ``dstar``: :func:`build_dstar`'s dict (CPU).

    Per layer: ``acc`` (Acc_i), ``vul`` (Eq. 5), ``large_vul`` (:func:`large_vulnerability_ci`),
    ``acc_natural``, ``vul_natural``, ``agreement_natural``, each share with a ``*_ci``
    interval ``[low, high]`` (``z``: 1.96 for 95 %); ``keeps_adversarial_label``: share of x*
    with f(x̂*) = f(x*); ``acc_judge``: share of x* whose explanation ``judge`` (an independent
    classifier on the same device, same input size) labels with the true label, or None
    without a judge.

    With K > 1 generator seeds per layer, every share is the mean over the seeds: each image
    counts as the share of its K explanations that hit, and the intervals are taken over the
    images with these fractional hits (:func:`wilson_interval` and
    :func:`paired_difference_interval` accept them). ``acc_seeds``/``vul_seeds`` then hold
    Acc_i and Vul_i of each seed's generators alone, and ``acc_seed_range`` their [min, max].
    """
    x, xa, y = dstar["x"], dstar["x_adv"], dstar["y"]
    e = _explain_dstar(model, gans, dstar, judge, z)
    names, n_img = list(e.groups), e.n
    hits = {n: e.hit_share(e.f_adv, y, n) for n in names}
    hits_nat = {n: e.hit_share(e.f_nat, y, n) for n in names}
    accs = [hits[n].mean().item() if n_img else 0.0 for n in names]
    accs_nat = [hits_nat[n].mean().item() if n_img else 0.0 for n in names]
    vul, vul_nat = vulnerability(accs), vulnerability(accs_nat)
    vul_ci = vul_intervals([hits[n] for n in names], z)
    stats = {"hits": hits, "hits_nat": hits_nat, "vul": vul, "vul_nat": vul_nat, "vul_ci": vul_ci,
             "marked": large_vulnerability_ci(vul, vul_ci), "per_seed": _per_seed_acc(e)}
    table = misclassification_table(y, dstar["pred_adv"], num_classes)
    return {
        "layers": names, "layer_labels": layer_labels(model, names),
        "clean_accuracy": (dstar["pred_clean"] == y).float().mean().item(),
        "adversarial_accuracy": (dstar["pred_adv"] == y).float().mean().item(),
        "n": n_img, "attack": dstar["attack"], "judged": judge is not None, "z": z,
        "generator_seeds": max(len(v) for v in e.groups.values()),
        "per_layer": [_layer_row(e, i, n, stats) for i, n in enumerate(names)],
        "maxpool_index_change": maxpool_index_change(model, x, xa),
        "misclassification": table.tolist(),
        "top_targets": top_targets(table),
    }


@dataclasses.dataclass
class _Explained:
    """f's labels of D*'s explanations, per member (layer × seed): ``f_adv`` of x*'s, ``f_nat``
    of x's, ``j_adv`` the judge's of x*'s (or None); ``fx`` f(x), ``y`` the true labels,
    ``pred_adv`` f(x*), all (N,); ``groups`` the members per layer."""

    groups: dict[str, list[str]]
    y: torch.Tensor
    pred_adv: torch.Tensor
    fx: torch.Tensor
    f_adv: dict[str, torch.Tensor]
    f_nat: dict[str, torch.Tensor]
    j_adv: dict[str, torch.Tensor] | None
    z: float

    @property
    def n(self) -> int:
        return len(self.y)

    def hit_share(self, labels: dict, ref: torch.Tensor, layer: str) -> torch.Tensor:
        """Per image, the share of the layer's seeds whose explanation gets label ``ref``: (N,)."""
        return torch.stack([(labels[k] == ref).double() for k in self.groups[layer]]).mean(0)

    def share(self, h: torch.Tensor) -> tuple[float, list[float]]:
        """The mean of per-image hits ``h`` (N,) and its Wilson interval."""
        k = float(h.sum())
        return (k / self.n if self.n else 0.0), list(wilson_interval(k, self.n, self.z))


def _explain_dstar(model: nn.Module, gans: dict, dstar: dict, judge: nn.Module | None,
                   z: float) -> _Explained:
    """Explain D*'s natural and adversarial images with every member and label them with f
    (and the judge)."""
    x, xa = dstar["x"], dstar["x_adv"]
    f_adv, j_adv = explain_and_label(model, gans, xa, judge=judge)
    f_nat, _ = explain_and_label(model, gans, x)
    return _Explained(members_by_layer(list(gans)), dstar["y"], dstar["pred_adv"], predict(model, x),
                      f_adv, f_nat, j_adv, z)


def _per_seed_acc(e: _Explained) -> list[list[float]]:
    """Acc_i of each seed's generators alone, ``[seed][layer]``; [] for one seed per layer."""
    seeds = max(len(v) for v in e.groups.values())
    if seeds <= 1:
        return []
    return [[(e.f_adv[ks[i]] == e.y).double().mean().item() if e.n else 0.0
             for ks in e.groups.values()] for i in range(seeds)]


def _layer_row(e: _Explained, i: int, n: str, stats: dict) -> dict:
    """Layer ``n``'s (the ``i``-th) row of :func:`diagnose_model`'s ``per_layer``."""
    y, pred_adv = e.y, e.pred_adv
    acc, acc_ci = e.share(stats["hits"][n])
    acc_nat, acc_nat_ci = e.share(stats["hits_nat"][n])
    agree, agree_ci = e.share(e.hit_share(e.f_nat, e.fx, n))
    keeps, keeps_ci = e.share(e.hit_share(e.f_adv, pred_adv, n))
    judged, judged_ci = e.share(e.hit_share(e.j_adv, y, n)) if e.j_adv is not None else (None, None)
    carry = fidelity_carry_over(torch.stack([e.f_adv[k] for k in e.groups[n]]), y, pred_adv, agree, e.z)
    row = {
        "layer": n, "acc": acc, "acc_ci": acc_ci, "vul": stats["vul"][i],
        "vul_ci": list(stats["vul_ci"][i]), "large_vul": stats["marked"][i],
        "acc_natural": acc_nat, "acc_natural_ci": acc_nat_ci, "vul_natural": stats["vul_nat"][i],
        "agreement_natural": agree, "agreement_natural_ci": agree_ci,
        "keeps_adversarial_label": keeps, "keeps_adversarial_label_ci": keeps_ci,
        "acc_judge": judged, "acc_judge_ci": judged_ci, **carry}
    per_seed = stats["per_seed"]
    if per_seed:
        row["acc_seeds"] = [a[i] for a in per_seed]
        row["vul_seeds"] = [vulnerability(a)[i] for a in per_seed]
        row["acc_seed_range"] = [min(row["acc_seeds"]), max(row["acc_seeds"])]
    return row


def fidelity_carry_over(labels: torch.Tensor, y: torch.Tensor, pred_adv: torch.Tensor,
                        agreement_natural: float, z: float = 1.96) -> dict:
    """How much of Acc_i a generator's infidelity to f explains.

    labels: (K, N) f's labels of the explanations of D*'s x* by the layer's K generator
    seeds; y, pred_adv: (N,) true labels and f(x*). Acc_i splits over whether the
    explanation keeps f's adversarial label f(x*) or departs from it:

        Acc_i = P(keep)·P(y | keep) + P(depart)·P(y | depart)

    where P(y | keep) is f's own accuracy on those x* (≈ 0 under a strong attack), so Acc_i
    is about P(depart)·P(y | depart). A generator that agreed with f on every input would
    give Acc_i = f's adversarial accuracy; a generator trained on natural images departs
    from f on them too, at rate 1 − agreement. Putting that natural departure rate in place
    of P(depart) gives ``acc_at_natural_fidelity``: the Acc_i this layer would show if its
    generator were no less faithful on x* than on natural images. ``true_label_when_departing``
    is P(y | depart) (chance among the other classes would be about 1/(classes − 1)), with
    its Wilson interval over the departing explanations (counted per image, averaged over seeds)."""
    hit = labels == y
    depart = labels != pred_adv
    k = labels.shape[0]
    n_dep, n_keep = depart.sum().item() / k, (~depart).sum().item() / k
    y_dep = (hit & depart).sum().item() / k
    y_keep = (hit & ~depart).sum().item() / k
    p_dep = y_dep / n_dep if n_dep else 0.0
    p_keep = y_keep / n_keep if n_keep else 0.0
    return {"true_label_when_departing": p_dep,
            "true_label_when_departing_ci": list(wilson_interval(y_dep, n_dep, z)),
            "acc_at_natural_fidelity": agreement_natural * p_keep + (1 - agreement_natural) * p_dep}


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion p̂ = k / n (z = 1.96: 95 %):

        centre = (p̂ + z²/(2n)) / (1 + z²/n)
        half   = z / (1 + z²/n) · √( p̂(1 − p̂)/n + z²/(4n²) )
        (low, high) = (centre − half, centre + half)

    Unlike p̂ ± z·√(p̂(1 − p̂)/n) it stays in [0, 1] and is not empty at k = 0 or k = n. The
    result is clipped to [0, 1] and always contains p̂; n = 0 gives (0, 1). ``successes``
    may be fractional (images that count as a share of a hit, as with several generator seeds)."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, {n}], got {successes}")
    p = successes / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z / d * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, min(centre - half, p)), min(1.0, max(centre + half, p))


def paired_difference_interval(a: torch.Tensor, b: torch.Tensor, z: float = 1.96) -> tuple[float, float]:
    """Normal interval for mean(a) − mean(b) when a, b (N,) are hits on the SAME images
    (bool, or per-image hit shares in [0, 1]): d_j = a_j − b_j, d̄ ± z·√(var(d)/N) with
    var(d) = mean(d²) − d̄² (for bool hits (n10 + n01)/N − d̄², n10: images a hits and b
    misses, n01 the reverse), clipped to [−1, 1]. With no discordant image the interval is
    the point d̄ itself."""
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired hit vectors must be (N,) of one length, got {tuple(a.shape)} and {tuple(b.shape)}")
    n = a.numel()
    if n == 0:
        return -1.0, 1.0
    d = a.double() - b.double()
    mean = d.mean().item()
    var = max((d * d).mean().item() - mean * mean, 0.0)
    half = z * math.sqrt(var / n)
    return max(-1.0, mean - half), min(1.0, mean + half)


def vul_intervals(hits: Sequence[torch.Tensor], z: float = 1.96) -> list[tuple[float, float]]:
    """Intervals for Eq. 5's Vul_i from per-layer hit vectors (N,) (bool or hit shares; layer order):
    Vul_1 = 1 − Acc_1 gets Acc_1's Wilson interval mirrored, (1 − high, 1 − low); Vul_i =
    Acc_{i−1} − Acc_i the paired :func:`paired_difference_interval`."""
    if not hits:
        return []
    h0 = hits[0]
    lo, hi = wilson_interval(float(h0.sum()), h0.numel(), z)
    out = [(1.0 - hi, 1.0 - lo)]
    out += [paired_difference_interval(hits[i - 1], hits[i], z) for i in range(1, len(hits))]
    return out


def vulnerability(accs: Sequence[float]) -> list[float]:
    """Eq. 5: ``[1 − Acc_1, Acc_1 − Acc_2, …, Acc_{L−1} − Acc_L]``."""
    accs = list(accs)
    return [1.0 - accs[0]] + [accs[i - 1] - accs[i] for i in range(1, len(accs))]


def large_vulnerability(vul: Sequence[float], frac: float = 0.4) -> list[bool]:
    """Mark layers whose Vul_i is at least ``frac`` × the average drop per layer
    (Σ Vul / L = (1 − Acc_L) / L). With frac = 0.4 this marks exactly Conv1, Conv2, Conv4
    and FC1 in both rows of the paper's Table 1, the layers its text calls vulnerable.
    The point rule; the diagnosis uses :func:`large_vulnerability_ci`."""
    mean = sum(vul) / len(vul)
    return [v >= frac * mean and v > 0 for v in vul]


def large_vulnerability_ci(vul: Sequence[float], intervals: Sequence[Sequence[float]],
                           frac: float = 0.4) -> list[bool]:
    """:func:`large_vulnerability` where the interval allows it: Vul_i's interval lower bound
    is ≥ ``frac`` × mean(Vul) (the point rule's threshold) and > 0. A layer whose interval
    crosses the threshold is not marked."""
    if len(vul) != len(intervals):
        raise ValueError(f"{len(vul)} Vul values but {len(intervals)} intervals")
    if not vul:
        return []
    threshold = frac * sum(vul) / len(vul)
    return [lo >= threshold and lo > 0 for lo, _ in intervals]


@torch.no_grad()
def predict(classifier: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """f's labels for ``x`` (N, C, H, W) on the classifier's device → (N,) int64 on the CPU."""
    dev = module_device(classifier)
    out = []
    with eval_mode(classifier):
        for s in range(0, len(x), batch_size):
            out.append(classifier(x[s: s + batch_size].to(dev)).argmax(1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


@torch.no_grad()
def explanation_labels(classifier: nn.Module, gans: dict, x: torch.Tensor, judge: nn.Module | None = None,
                       batch_size: int = 250):
    """The name of 0.1: :func:`~interpretgan.interpret.explainer.explain_and_label`'s labels by
    f, or with a ``judge`` the pair ``(by_f, by_judge)``."""
    by_f, by_judge = explain_and_label(classifier, gans, x, judge=judge, batch_size=batch_size)
    return by_f if judge is None else (by_f, by_judge)


def layer_hits(classifier: nn.Module, gans: dict, x: torch.Tensor, labels: torch.Tensor,
               batch_size: int = 250) -> dict[str, torch.Tensor]:
    """Per layer, which images of ``x`` (N, C, H, W) have an explanation f labels ``labels``
    (N,): ``{layer: (N,) bool}`` on the CPU (Acc_i's per-image hits)."""
    y = labels.cpu()
    return {n: p == y for n, p in explain_and_label(classifier, gans, x, batch_size=batch_size)[0].items()}


def layer_accuracy(classifier: nn.Module, gans: dict, x: torch.Tensor, y: torch.Tensor,
                   batch_size: int = 250) -> dict[str, float]:
    """Acc_i per layer: share of ``x`` (N, C, H, W) whose explanation f labels ``y`` (N,)."""
    return {n: h.float().mean().item() if h.numel() else 0.0
            for n, h in layer_hits(classifier, gans, x, y, batch_size).items()}


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


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def tied_windows(inp: torch.Tensor, pool: nn.MaxPool2d) -> torch.Tensor:
    """Whether each pooling window's maximum is reached at more than one position (an all-zero
    window after a ReLU, say), where the arg-max is not defined. inp: (B, C, H, W) → (B, C, H', W') bool."""
    (kh, kw), (sh, sw) = _pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size)
    (ph, pw), (dh, dw) = _pair(pool.padding), _pair(pool.dilation)
    out_h, out_w = pool_indices(inp[:1, :1], pool).shape[-2:]
    need_h, need_w = (out_h - 1) * sh + dh * (kh - 1) + 1, (out_w - 1) * sw + dw * (kw - 1) + 1
    x = F.pad(inp.float(), (pw, max(0, need_w - inp.shape[-1] - pw), ph, max(0, need_h - inp.shape[-2] - ph)),
              value=float("-inf"))[..., :need_h, :need_w]  # exactly the windows max_pool2d takes
    b, c = inp.shape[:2]
    cols = F.unfold(x.reshape(b * c, 1, *x.shape[-2:]), (kh, kw), dilation=(dh, dw), stride=(sh, sw))
    ties = (cols == cols.amax(1, keepdim=True)).sum(1) > 1  # (B·C, L)
    return ties.view(b, c, out_h, out_w)


def _moved_and_defined(a: torch.Tensor, b: torch.Tensor, pool: nn.MaxPool2d) -> tuple[int, int, int]:
    """(windows whose arg-max moves, windows with a single maximum in both inputs, windows)."""
    defined = ~(tied_windows(a, pool) | tied_windows(b, pool))
    moved = (pool_indices(a, pool) != pool_indices(b, pool)) & defined
    return int(moved.sum()), int(defined.sum()), defined.numel()


def index_change(a: torch.Tensor, b: torch.Tensor, pool: nn.MaxPool2d) -> float:
    """Share of pooling windows whose arg-max differs between inputs ``a`` and ``b``, over the
    windows whose maximum is at one position in both (tied windows are left out: their arg-max
    is only the first of the tied positions); NaN when there is none."""
    moved, defined, _ = _moved_and_defined(a, b, pool)
    return moved / defined if defined else float("nan")


@torch.no_grad()
def maxpool_index_change(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor,
                         batch_size: int = 500) -> dict[str, float]:
    """For every ``nn.MaxPool2d`` call of ``model``: the share of windows whose arg-max moves
    between natural ``x`` and adversarial ``x_adv`` (N, C, H, W; paper: 40.9 % and 18.1 % on
    MNIST), over the windows with one maximum in both inputs (:func:`index_change`; windows
    tied in either, such as all-zero ones after a ReLU, are left out and their share logged).
    The pools' inputs are taken with :func:`~interpretgan.layers.capture`."""
    dev = module_device(model)
    if len(x) == 0:
        return {}
    names = maxpool_layers(model, x[:1].to(dev))
    if not names:
        return {}
    pools = {n: resolve(model, n).module for n in names}
    changed = {n: 0 for n in names}
    defined = {n: 0 for n in names}
    total = {n: 0 for n in names}
    with eval_mode(model):
        for s in range(0, len(x), batch_size):
            a = capture(model, x[s: s + batch_size].to(dev), names, inputs=True)
            b = capture(model, x_adv[s: s + batch_size].to(dev), names, inputs=True)
            for n, pool in pools.items():
                moved, ok, windows = _moved_and_defined(a[n], b[n], pool)
                changed[n] += moved
                defined[n] += ok
                total[n] += windows
    for n in names:
        if total[n]:
            log.info("max-pool %s: %.1f %% of windows tied (left out of the index change)", n,
                     100 * (1 - defined[n] / total[n]))
    return {n: changed[n] / defined[n] for n in names if defined[n]}


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
