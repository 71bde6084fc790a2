"""Natural training loop: learns, writes the run folder, resumes after an interruption."""
from __future__ import annotations

import json

import pytest
import torch

from interpretgan import models
from interpretgan.config import DataConfig, TrainConfig, override, train_preset_for
from interpretgan.runs import load_checkpoint, read_jsonl
from interpretgan.training import lr_at, natural_step, train_classifier


def _cfg(shared_cache, **kw):
    base = TrainConfig(data=DataConfig(cache_dir=str(shared_cache), train_subset=2000,
                                       test_subset=500),
                       epochs=3, batch_size=64, lr=0.05, lr_milestones=(2,), seed=1)
    return override(base, **kw)


def test_paper_schedule_is_the_mnist_default():
    cfg = train_preset_for("mnist", "natural")
    assert (cfg.epochs, cfg.lr, cfg.momentum, cfg.model.name, cfg.model.pool) == (10, 0.01, 0.9, "smallcnn", "max")
    assert [lr_at(cfg, e) for e in (0, 4, 5, 9)] == pytest.approx([0.01, 0.01, 0.001, 0.001])


def test_natural_step_reduces_loss_on_a_fixed_batch():
    net = models.create("smallcnn")
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    y = torch.arange(32) % 10
    x = torch.zeros(32, 1, 32, 32)
    for i, c in enumerate(y):  # class c: a bright vertical bar at columns 3c..3c+2
        x[i, 0, :, 3 * c: 3 * c + 3] = 1
    first = natural_step(net, opt, x, y)["loss"]
    for _ in range(15):
        last = natural_step(net, opt, x, y)["loss"]
    assert set(natural_step(net, opt, x, y)) == {"loss", "acc"}
    assert last < 0.5 * first


def test_training_learns_and_writes_run_folder(mnist_small, shared_cache, tmp_path):
    cfg = _cfg(shared_cache)
    m = train_classifier(cfg, tmp_path / "run", progress=False)
    assert m["test_accuracy"] > 0.85  # 2,000 MNIST images, 3 epochs
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[2]["lr"] == pytest.approx(0.005)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"]["train_subset"] == 2000 and saved["method"] == "natural"
    ck = load_checkpoint(tmp_path / "run" / "checkpoints" / "final.pt")
    assert ck["model"] == "smallcnn" and ck["metrics"]["test_accuracy"] == m["test_accuracy"]
    net = models.load_classifier(tmp_path / "run" / "checkpoints" / "final.pt")
    assert isinstance(net, models.SmallCNN)
    # a finished run is reused, not retrained
    again = train_classifier(cfg, tmp_path / "run", progress=False)
    assert again["test_accuracy"] == m["test_accuracy"]


def test_resume_after_interruption_matches_uninterrupted(mnist_small, shared_cache, tmp_path):
    cfg = _cfg(shared_cache, epochs=2, lr_milestones=(1,), **{"data.train_subset": 640})
    full = train_classifier(cfg, tmp_path / "a", progress=False)
    part = train_classifier(cfg, tmp_path / "b", progress=False, stop_after=1)
    assert part == {"interrupted": True, "epoch": 1}
    assert (tmp_path / "b" / "checkpoints" / "last.pt").exists()
    assert not (tmp_path / "b" / "checkpoints" / "final.pt").exists()
    resumed = train_classifier(cfg, tmp_path / "b", progress=False)
    assert resumed["test_accuracy"] == full["test_accuracy"]
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "final.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "final.pt")["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    assert [r["epoch"] for r in read_jsonl(tmp_path / "b" / "metrics.jsonl")] == [1, 2]


def test_resume_refuses_a_different_config(mnist_small, shared_cache, tmp_path):
    cfg = _cfg(shared_cache, epochs=2, **{"data.train_subset": 256})
    train_classifier(cfg, tmp_path / "r", progress=False, stop_after=1)
    with pytest.raises(ValueError, match="another config"):
        train_classifier(override(cfg, lr=0.5), tmp_path / "r", progress=False)
