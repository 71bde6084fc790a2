"""Diagnosis: Eq. 5 on hand-made numbers, pooling index change by hand, misclassification table."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from interpretgan.config import DataConfig, FitConfig
from interpretgan.data import ImageDataset
from interpretgan.diagnosis.diagnose import (build_dstar, dstar_indices, index_change, large_vulnerability,
                                   maxpool_index_change, misclassification_table, top_targets,
                                   tied_windows, vulnerability)
from interpretgan.fitting import heldout_indices

PAPER_NAT = [0.526, 0.263, 0.216, 0.099, 0.043, 0.030, 0.035]
PAPER_ADV = [0.951, 0.940, 0.939, 0.926, 0.901, 0.900, 0.895]


def test_eq5_reproduces_paper_table_1():
    assert vulnerability(PAPER_NAT) == pytest.approx([0.474, 0.263, 0.047, 0.117, 0.056, 0.013, -0.005])
    assert vulnerability(PAPER_ADV) == pytest.approx([0.049, 0.011, 0.001, 0.013, 0.025, 0.001, 0.005])
    assert sum(vulnerability([0.9, 0.5, 0.6])) == pytest.approx(1 - 0.6)


def test_large_vulnerability_marks_the_papers_layers():
    marked = [i for i, m in enumerate(large_vulnerability(vulnerability(PAPER_NAT))) if m]
    assert marked == [0, 1, 3, 4]  # Conv1, Conv2, Conv4, FC1
    marked = [i for i, m in enumerate(large_vulnerability(vulnerability(PAPER_ADV))) if m]
    assert marked == [0, 1, 3, 4]


def test_index_change_on_a_hand_made_tensor():
    pool = nn.MaxPool2d(2, 2)
    a = torch.tensor([[[[1.0, 0, 0, 2], [0, 0, 0, 0], [0, 3, 0, 0], [0, 0, 0, 4]]]])
    b = a.clone()
    b[0, 0, 0, 1] = 5.0  # window (0,0): max moves from (0,0) to (0,1)
    b[0, 0, 3, 3] = 9.0  # window (1,1): same position, larger value → unchanged
    assert index_change(a, b, pool) == pytest.approx(1 / 4)


def test_index_change_leaves_tied_windows_out():
    """An all-zero window (after a ReLU) has no arg-max: max_pool2d reports position 0, so a
    feature appearing elsewhere in it would count as a move. Windows tied in either input are
    left out of the share."""
    pool = nn.MaxPool2d(2, 2)
    a = torch.tensor([[[[1.0, 0, 0, 0], [0, 0, 0, 0], [0, 3, 0, 0], [0, 0, 0, 4]]]])
    b = a.clone()
    b[0, 0, 1, 3] = 0.5  # window (0,1): all zero → one feature at (1,1): not a move, left out
    b[0, 0, 2, 0] = 7.0  # window (1,0): (0,1) → (0,0): a move
    assert tied_windows(a, pool).view(-1).tolist() == [False, True, False, False]
    assert index_change(a, b, pool) == pytest.approx(1 / 3)
    assert math.isnan(index_change(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), pool))
    # padding, dilation and ceil_mode: ties agree with a window-by-window count
    x = torch.randint(0, 3, (2, 3, 9, 9)).float()
    for p in (nn.MaxPool2d(3, 2, padding=1), nn.MaxPool2d(2, 2, ceil_mode=True), nn.MaxPool2d(2, 1, dilation=2)):
        ties = tied_windows(x, p)
        vals, _ = F.max_pool2d(x, p.kernel_size, p.stride, p.padding, p.dilation, p.ceil_mode, return_indices=True)
        assert ties.shape == vals.shape
        k, s_, pad, d = (p.kernel_size, p.stride, p.padding, p.dilation)
        xp = F.pad(x, (pad, pad + 2, pad, pad + 2), value=float("-inf"))
        for i, j in ((0, 0), (1, 2), (ties.shape[-2] - 1, ties.shape[-1] - 1)):
            win = xp[..., i * s_: i * s_ + d * (k - 1) + 1: d, j * s_: j * s_ + d * (k - 1) + 1: d]
            by_hand = (win == win.amax((-2, -1), keepdim=True)).sum((-2, -1)) > 1
            assert torch.equal(ties[..., i, j], by_hand), (p, i, j)


def test_maxpool_index_change_per_pooling_layer():
    net = nn.Sequential(nn.Identity(), nn.MaxPool2d(2), nn.MaxPool2d(2)).eval()
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = 1
    x[0, 0, 0, 3] = 2
    x[0, 0, 2, 2] = 3
    x[0, 0, 3, 0] = 4
    x_adv = x.clone()
    x_adv[0, 0, 1, 1] = 2  # first pool, window (0,0): arg-max (0,0) → (1,1)
    x_adv[0, 0, 3, 3] = 5  # first pool, window (1,1): (2,2) → (3,3); second pool: (1,0) → (1,1)
    out = maxpool_index_change(net, x, x_adv)
    assert out == pytest.approx({"1": 2 / 4, "2": 1.0})
    x_adv2 = x.clone()
    x_adv2[0, 0, 1, 1] = 2  # first pool changes 1 of 4; second pool still picks its (1,0)
    assert maxpool_index_change(net, x, x_adv2) == pytest.approx({"1": 0.25, "2": 0.0})
    assert not any(m._forward_hooks for m in net.modules())


def test_misclassification_table_and_top_targets():
    y = torch.tensor([0, 0, 0, 0, 7, 7, 1])
    p = torch.tensor([6, 6, 0, 5, 3, 7, 1])
    t = misclassification_table(y, p, 10)
    assert t.shape == (10, 10) and t.sum() == 7
    assert t[0, 6] == 2 and t[0, 0] == 1 and t[0, 5] == 1 and t[7, 3] == 1
    top = top_targets(t)
    assert top[0] == {"true": 0, "top_target": 6, "count": 2, "share": 0.5, "misclassified_share": 0.75}
    assert top[7]["top_target"] == 3 and top[7]["share"] == 0.5


def numbered(n: int) -> ImageDataset:
    """n 1×4×4 images whose first pixel is their index (so an image names its index)."""
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)
    images[:, 0, 2:, 2:] = 200
    return ImageDataset(images, torch.arange(n) % 10, "numbered", [str(i) for i in range(10)])


def index_of(x: torch.Tensor) -> set[int]:
    return set(torch.round(x[:, 0, 0, 0] * 255).long().tolist())


def test_dstar_indices_are_the_images_build_dstar_attacks(tmp_path):
    torch.manual_seed(0)
    test = numbered(60)
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 10)).eval()
    doc = build_dstar(net, test, "fgsm", "mnist", 20, 0, tmp_path / "d.pt", batch_size=7, progress=False)
    idx = dstar_indices(test, 20)
    assert torch.equal(doc["index"], idx) and len(set(idx.tolist())) == 20
    assert torch.equal(doc["x"], test.images[idx].float() / 255) and torch.equal(doc["y"], test.labels[idx])
    assert torch.equal(doc["x"], test.subset(20, seed=0).images.float() / 255)
    assert index_of(doc["x"]) == set(idx.tolist()) != set(range(20))  # a permutation, not the first 20
    assert doc["x_adv"].device.type == "cpu" and doc["x_adv"].shape == doc["x"].shape
    whole = dstar_indices(test, None)  # the whole split: a seeded shuffle balanced by class
    assert sorted(whole.tolist()) == list(range(60)) and not torch.equal(whole, torch.arange(60))
    assert torch.equal(whole, dstar_indices(test, 60)) and torch.equal(whole, dstar_indices(test, 99))
    assert sorted(test.labels[whole[:10]].tolist()) == list(range(10))


def test_heldout_images_spread_over_the_classes_of_a_class_sorted_split():
    labels = torch.arange(60) // 20  # three classes, stored class by class
    ev, ref, _ = heldout_indices(60, torch.arange(0, 60, 2), 6, labels)  # 30 left outside D*
    assert labels[ev].bincount().tolist() == labels[ref].bincount().tolist() == [2, 2, 2]
    ev, _, _ = heldout_indices(60, torch.arange(0, 60, 2), 6)  # no labels: in file order
    assert labels[ev].tolist() == [0] * 6


def test_heldout_images_are_outside_dstar_and_apart(caplog):
    test = numbered(60)
    dstar = set(dstar_indices(test, 20).tolist())
    ev, ref, outside = heldout_indices(60, dstar_indices(test, 20), 10)
    assert outside and len(ev) == len(ref) == 10
    assert not set(ev.tolist()) & dstar and not set(ref.tolist()) & dstar
    assert not set(ev.tolist()) & set(ref.tolist())
    ev, ref, _ = heldout_indices(60, dstar_indices(test, 20), 1000)  # 40 outside D*: 20 + 20
    assert len(ev) == len(ref) == 20 and set(ev.tolist()) | set(ref.tolist()) == set(range(60)) - dstar
    ev, ref, outside = heldout_indices(60, dstar_indices(test, None), 10)  # D* = the whole split
    assert not outside and len(ev) == 10 and "also in D*" in caplog.text
    with pytest.raises(ValueError, match="outside D"):
        heldout_indices(60, dstar_indices(test, 57), 10)


def test_fit_and_summarize_judges_on_heldout_images_only(tmp_path, monkeypatch):
    """Both the fit's running agreement and the summary (agreement images and KID's real
    reference) get test images outside D*, and two different sets of them."""
    from interpretgan.interpret import fit as fitting
    from interpretgan.runs import read_json

    test, seen = numbered(60), {}
    monkeypatch.setattr(fitting, "load_split", lambda cfg, split: numbered(30) if split == "train" else test)

    def fake_fit(classifier, train_set, eval_x, cfg, out_dir, layers=None, progress=True, **kw):
        seen["fit"] = eval_x.clone()
        assert eval_x.device.type == "cpu" and len(train_set) == cfg.train_subset

    def fake_quality(classifier, gans, data, eval_x, real_ref, seconds=None):
        seen["eval"], seen["ref"] = eval_x.clone(), real_ref.clone()
        return {"layers": {}, "n_eval": len(eval_x), "fit_seconds": seconds}

    monkeypatch.setattr(fitting, "fit_generators", fake_fit)
    monkeypatch.setattr(fitting, "load_generators", lambda fit_dir, channels=1: {})
    monkeypatch.setattr(fitting, "quality_summary", fake_quality)
    dstar = dstar_indices(test, 25)
    fit_cfg = FitConfig(eval_images=12, train_subset=16, batch_size=16)
    summary = fitting.fit_and_summarize(nn.Linear(2, 2), DataConfig(), fit_cfg,
                                        tmp_path / "fit", dstar_indices=dstar, progress=False)
    d = set(dstar.tolist())
    assert torch.equal(seen["fit"], seen["eval"])
    assert len(index_of(seen["eval"])) == len(index_of(seen["ref"])) == 12
    assert not index_of(seen["eval"]) & d and not index_of(seen["ref"]) & d
    assert not index_of(seen["eval"]) & index_of(seen["ref"])
    assert summary["heldout_outside_dstar"] is True
    assert read_json(tmp_path / "fit" / "summary.json")["n_eval"] == 12


# --------------------------------------------------------------------------- intervals
def test_wilson_interval_on_hand_worked_counts():
    from interpretgan.diagnosis.diagnose import wilson_interval

    z2 = 1.96 ** 2
    # k = 0 and k = n: the closed forms are [0, z²/(n + z²)] and [n/(n + z²), 1]
    assert wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))
    assert wilson_interval(0, 10)[1] == pytest.approx(0.27754, abs=1e-5)
    assert wilson_interval(10, 10) == pytest.approx((10 / (10 + z2), 1.0))
    # 8/10 by hand: centre = (0.8 + z²/20)/(1 + z²/10), half = 1.96/(1 + z²/10)·√(0.016 + z²/400)
    d = 1 + z2 / 10
    centre, half = (0.8 + z2 / 20) / d, 1.96 / d * (0.016 + z2 / 400) ** 0.5
    assert wilson_interval(8, 10) == pytest.approx((centre - half, centre + half))
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    # a published worked example: 81 of 263 → [0.2553, 0.3662]
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    # always contains the point estimate, stays in [0, 1]; narrower with a smaller z
    for k in range(0, 21):
        lo, hi = wilson_interval(k, 20)
        assert 0 <= lo <= k / 20 <= hi <= 1
    lo90, hi90 = wilson_interval(8, 10, z=1.645)
    assert centre - half < lo90 and hi90 < centre + half
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_paired_vul_interval_on_hand_made_hit_vectors():
    from interpretgan.diagnosis.diagnose import paired_difference_interval, vul_intervals, wilson_interval

    # 10 images: layer 1 hits 8, layer 2 hits 5; discordant: 4 hit→miss, 1 miss→hit
    a = torch.tensor([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=torch.bool)
    b = torch.tensor([1, 1, 1, 0, 0, 0, 0, 1, 1, 0], dtype=torch.bool)
    mean = 0.8 - 0.5
    var = (4 + 1) / 10 - mean ** 2  # E[d²] − d̄² = 0.41
    half = 1.96 * (var / 10) ** 0.5
    assert paired_difference_interval(a, b) == pytest.approx((mean - half, mean + half))
    ci = vul_intervals([a, b])
    lo, hi = wilson_interval(8, 10)
    assert ci[0] == pytest.approx((1 - hi, 1 - lo))  # Vul_1 = 1 − Acc_1: Acc_1's interval mirrored
    assert ci[1] == pytest.approx((mean - half, mean + half))
    # pairing matters: the same marginals with every change in one direction is tighter
    b2 = torch.tensor([1, 1, 1, 1, 1, 0, 0, 0, 0, 0], dtype=torch.bool)
    a2 = torch.tensor([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=torch.bool)
    lo2, hi2 = paired_difference_interval(a2, b2)
    assert hi2 - lo2 < 2 * half and lo2 <= 0.3 <= hi2
    # no discordant image: the point itself
    assert paired_difference_interval(a, a) == (0.0, 0.0)
    with pytest.raises(ValueError):
        paired_difference_interval(a, b[:5])


def test_large_vul_mark_needs_the_interval_above_the_threshold():
    from interpretgan.diagnosis.diagnose import large_vulnerability_ci

    vul = [0.5, 0.3, 0.05, 0.15]  # mean 0.25 → threshold 0.1
    assert large_vulnerability(vul) == [True, True, False, True]  # the point rule
    tight = [(0.45, 0.55), (0.25, 0.35), (0.0, 0.1), (0.12, 0.18)]
    assert large_vulnerability_ci(vul, tight) == [True, True, False, True]
    wide = [(0.45, 0.55), (0.05, 0.55), (0.0, 0.1), (0.09, 0.21)]  # Vul_2, Vul_4 cross 0.1
    assert large_vulnerability_ci(vul, wide) == [True, False, False, False]
    # a lower bound at the threshold is enough, but never a bound ≤ 0
    assert large_vulnerability_ci(vul, [(0.1, 0.9)] * 4) == [True] * 4
    assert large_vulnerability_ci([0.0, 0.0], [(0.0, 0.0), (0.0, 0.0)]) == [False, False]
    with pytest.raises(ValueError):
        large_vulnerability_ci(vul, tight[:3])


class _Shift(nn.Module):
    """A fake generator bank: the explanation is the captured input plus a constant."""

    def __init__(self, delta: float):
        super().__init__()
        self.delta = delta

    def explain(self, feats, scale=None, alpha=1.0):
        return feats + self.delta


class _MeanNet(nn.Module):
    """2 classes: class 1 iff the mean pixel exceeds 0.5; layers ``a`` and ``b`` pass x on."""

    def __init__(self):
        super().__init__()
        self.a = nn.Identity()
        self.b = nn.Identity()

    def forward(self, x):
        m = self.b(self.a(x)).mean((1, 2, 3))
        return torch.stack([0.5 - m, m - 0.5], 1)


def test_diagnose_model_intervals_and_controls_on_a_hand_made_classifier():
    from interpretgan.diagnosis.diagnose import diagnose_model, layer_accuracy, layer_hits

    class Flip(nn.Module):  # the judge: class 1 iff the mean pixel is below 0.5
        def forward(self, x):
            m = x.mean((1, 2, 3))
            return torch.stack([m - 0.5, 0.5 - m], 1)

    net = _MeanNet().eval()
    levels = torch.tensor([0.1, 0.2, 0.3, 0.45, 0.55, 0.7, 0.8, 0.9])
    x = levels.view(-1, 1, 1, 1).expand(-1, 1, 4, 4).clone()
    y = (levels > 0.5).long()
    xa = x.clone()
    pred_adv = net(xa).argmax(1)
    dstar = {"x": x, "x_adv": xa, "y": y, "pred_clean": y, "pred_adv": pred_adv, "attack": "none"}
    gans = {"a": _Shift(0.0), "b": _Shift(0.1)}  # b's explanations push 0.45 over the line
    hits = layer_hits(net, gans, xa, y)
    assert hits["a"].dtype == torch.bool and hits["a"].tolist() == [True] * 8
    assert hits["b"].tolist() == [True, True, True, False, True, True, True, True]
    assert layer_accuracy(net, gans, xa, y) == pytest.approx({"a": 1.0, "b": 7 / 8})
    d = diagnose_model(net, gans, dstar, 2, judge=Flip())
    a, b = d["per_layer"]
    assert a["acc"] == 1.0 and b["acc"] == 7 / 8 and b["vul"] == pytest.approx(1 / 8)
    for p in (a, b):
        for k in ("acc", "vul", "acc_natural", "agreement_natural", "keeps_adversarial_label", "acc_judge"):
            lo, hi = p[k + "_ci"]
            assert lo <= p[k] <= hi, k
    assert a["acc_judge"] == 0.0 and b["acc_judge"] == pytest.approx(1 / 8)  # the judge disagrees
    assert b["keeps_adversarial_label"] == 7 / 8
    assert not b["large_vul"]  # one image of eight: the interval reaches 0
    assert diagnose_model(net, gans, dstar, 2)["per_layer"][0]["acc_judge"] is None


def test_generator_seeds_average_per_image_and_report_each_seed():
    """Two generator seeds per layer ("b" and "b#seed1"): every share is the mean over the
    seeds, the intervals are taken over images with fractional hits, and acc_seeds holds each
    seed's own Acc_i."""
    from interpretgan.diagnosis.diagnose import diagnose_model, paired_difference_interval, wilson_interval

    net = _MeanNet().eval()
    levels = torch.tensor([0.1, 0.2, 0.3, 0.45, 0.55, 0.7, 0.8, 0.9])
    x = levels.view(-1, 1, 1, 1).expand(-1, 1, 4, 4).clone()
    y = (levels > 0.5).long()
    dstar = {"x": x, "x_adv": x.clone(), "y": y, "pred_clean": y, "pred_adv": y, "attack": "none"}
    # layer a: both seeds exact; layer b: seed 0 moves 0.45 over the line (7/8), seed 1
    # also moves 0.3 (6/8)
    gans = {"a": _Shift(0.0), "a#seed1": _Shift(0.0), "b": _Shift(0.1), "b#seed1": _Shift(0.25)}
    d = diagnose_model(net, gans, dstar, 2)
    assert d["layers"] == ["a", "b"] and d["generator_seeds"] == 2
    a, b = d["per_layer"]
    assert a["acc_seeds"] == [1.0, 1.0] and b["acc_seeds"] == [7 / 8, 6 / 8]
    assert b["acc"] == pytest.approx(13 / 16) and b["acc_seed_range"] == [6 / 8, 7 / 8]
    assert b["vul_seeds"] == pytest.approx([1 / 8, 2 / 8])
    assert b["vul"] == pytest.approx(3 / 16)
    # per-image hit shares of b: 1, 1, 0.5, 0, 1, 1, 1, 1 → Wilson on 6.5 of 8
    assert b["acc_ci"] == pytest.approx(list(wilson_interval(6.5, 8)))
    share = torch.tensor([1, 1, 0.5, 0, 1, 1, 1, 1], dtype=torch.float64)
    assert b["vul_ci"] == pytest.approx(list(paired_difference_interval(torch.ones(8, dtype=torch.float64), share)))
    # the hand-worked paired interval of the shares: d = 0, 0, 0.5, 1, 0, …: mean 3/16,
    # E[d²] = 1.25/8
    mean, var = 3 / 16, 1.25 / 8 - (3 / 16) ** 2
    half = 1.96 * (var / 8) ** 0.5
    assert b["vul_ci"] == pytest.approx([mean - half, mean + half])
    # one seed: no per-seed fields
    one = diagnose_model(net, {"a": _Shift(0.0), "b": _Shift(0.1)}, dstar, 2)
    assert one["generator_seeds"] == 1 and "acc_seeds" not in one["per_layer"][1]


def test_fidelity_carry_over_on_hand_made_labels():
    """Acc_i = P(keep)·P(y|keep) + P(depart)·P(y|depart): with the natural departure rate
    in place of P(depart), the Acc_i of a generator as faithful on x* as on x."""
    from interpretgan.diagnosis.diagnose import fidelity_carry_over, wilson_interval

    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    pred_adv = (y + 1) % 10  # every x* fooled
    labels = pred_adv.clone()  # 10 explanations: 6 keep f(x*), 3 go back to y, 1 elsewhere
    labels[:3] = y[:3]
    labels[3] = 0
    out = fidelity_carry_over(labels[None], y, pred_adv, agreement_natural=0.9)
    assert out["true_label_when_departing"] == pytest.approx(3 / 4)
    assert out["true_label_when_departing_ci"] == pytest.approx(list(wilson_interval(3, 4)))
    # P(y|keep) = 0 here, so 0.9·0 + 0.1·0.75
    assert out["acc_at_natural_fidelity"] == pytest.approx(0.075)
    # two seeds: counts averaged over them; a kept label that is the true one counts in P(y|keep)
    pred2 = pred_adv.clone()
    pred2[9] = 9  # the attack failed on the last image
    two = torch.stack([labels, pred2])  # seed 1 keeps every adversarial label
    out2 = fidelity_carry_over(two, y, pred2, agreement_natural=0.5)
    # seed 0 now departs on image 9 too (its label 0 is neither 9 nor f(x*) = 9): 3 of 5
    # departing go to y; seed 1 keeps all 10, of which image 9 is true: 1 of 15 kept
    p_dep = (3 / 2) / (5 / 2)
    p_keep = (1 / 2) / (15 / 2)
    assert out2["true_label_when_departing"] == pytest.approx(p_dep)
    assert out2["acc_at_natural_fidelity"] == pytest.approx(0.5 * p_keep + 0.5 * p_dep)
