"""The command line is a thin layer: options reach the library, errors are clear."""
from __future__ import annotations

import json
import subprocess
import sys

import torch

from interpretgan import models
from interpretgan.cli import main
from interpretgan.runs import save_checkpoint


def test_models_and_layers(capsys):
    assert main(["models"]) == 0
    assert capsys.readouterr().out.split() == models.list_models()
    assert main(["layers", "--model", "smallcnn", "--pool", "avg", "--input-size", "28"]) == 0
    out = capsys.readouterr().out
    assert "* feature_extractor.pool2" in out and "(64, 4, 4)" in out and "* classifier.fc3" in out


def test_train_dry_run_resolves_preset_and_overrides(capsys, tmp_path):
    assert main(["train", "--dataset", "mnist", "--pool", "avg", "--epochs", "3", "--dry-run",
                 "--run-dir", str(tmp_path / "x")]) == 0
    out = capsys.readouterr().out
    cfg = json.loads(out[: out.rindex("}") + 1])
    assert cfg["model"]["pool"] == "avg" and cfg["epochs"] == 3 and cfg["lr_milestones"] == [5]
    assert not (tmp_path / "x").exists()
    assert main(["train", "--method", "atta-trades", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out[: out.rindex("}") + 1])["method"] == "atta-trades"


def test_clear_errors(tmp_path, caplog):
    p = save_checkpoint(tmp_path / "c.pt", models.classifier_state(models.create("smallcnn")))
    assert main(["evaluate", "--checkpoint", str(p), "--attacks", "pgd-forty"]) == 2
    assert "unknown attack 'pgd-forty'" in caplog.text
    assert main(["evaluate", "--checkpoint", str(p), "--model", "vgg16"]) == 2
    assert "holds a smallcnn" in caplog.text
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing.pt")]) == 2
    assert "checkpoint not found" in caplog.text
    assert main(["data", "fetch", "--dataset", "cifar10", "--data-dir", str(tmp_path)]) == 2
    assert "cifar-10-batches-py" in caplog.text


def test_console_script_entry_point():
    r = subprocess.run([sys.executable, "-m", "interpretgan.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip()
