"""Diagnosis: Eq. 5 on hand-made numbers, pooling index change by hand, misclassification table."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from interpretgan.config import DataConfig, FitConfig
from interpretgan.data import ImageDataset
from interpretgan.diagnose import (build_dstar, dstar_indices, index_change, large_vulnerability,
                                   maxpool_index_change, misclassification_table, top_targets,
                                   vulnerability)
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


def test_maxpool_index_change_per_pooling_layer():
    net = nn.Sequential(nn.Identity(), nn.MaxPool2d(2), nn.MaxPool2d(2)).eval()
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = 1
    x[0, 0, 2, 2] = 1
    x_adv = x.clone()
    x_adv[0, 0, 1, 1] = 2  # first pool, window (0,0): arg-max (0,0) → (1,1)
    x_adv[0, 0, 3, 3] = 3  # first pool, window (1,1): (2,2) → (3,3); second pool: (0,0) → (1,1)
    out = maxpool_index_change(net, x, x_adv)
    assert out == pytest.approx({"1": 2 / 4, "2": 1.0})
    x_adv2 = x.clone()
    x_adv2[0, 0, 1, 1] = 2  # first pool changes 1 of 4; second pool still picks its (0,0)
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
    assert torch.equal(dstar_indices(test, None), torch.arange(60))


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
    from interpretgan import fitting
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
    summary = fitting.fit_and_summarize(nn.Linear(2, 2), DataConfig(), FitConfig(eval_images=12, train_subset=16),
                                        tmp_path / "fit", dstar_indices=dstar, progress=False)
    d = set(dstar.tolist())
    assert torch.equal(seen["fit"], seen["eval"])
    assert len(index_of(seen["eval"])) == len(index_of(seen["ref"])) == 12
    assert not index_of(seen["eval"]) & d and not index_of(seen["ref"]) & d
    assert not index_of(seen["eval"]) & index_of(seen["ref"])
    assert summary["heldout_outside_dstar"] is True
    assert read_json(tmp_path / "fit" / "summary.json")["n_eval"] == 12
