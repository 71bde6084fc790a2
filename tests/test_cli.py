"""The command line is a thin layer: options reach the library, errors are clear."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

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


def test_set_assignments_reach_the_fit_and_run_configs(capsys):
    from interpretgan.config import parse_assignments

    assert parse_assignments(["a=3", "b=[1,2]", "c=wgan-gp", "d=null", "e=0.5"]) == {
        "a": 3, "b": (1, 2), "c": "wgan-gp", "d": None, "e": 0.5}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_assignments(["batch_size"])
    assert main(["fit", "--checkpoint", "x.pt", "--dry-run", "--set", "batch_size=8",
                 "--set", "g_channels=[8,8,8,8]"]) == 0
    out = capsys.readouterr().out
    cfg = json.loads(out[: out.rindex("}") + 1])["fit"]
    assert cfg["batch_size"] == 8 and cfg["g_channels"] == [8, 8, 8, 8]
    assert main(["run", "--dry-run", "--set", "fit.batch_size=16", "--set", "train.epochs=2",
                 "--set", "attack=fgsm"]) == 0
    out = capsys.readouterr().out
    cfg = json.loads(out[: out.rindex("}") + 1])
    assert cfg["fit_overrides"] == {"generator_seeds": [0, 1], "batch_size": 16}  # the preset's + ours
    assert cfg["train_overrides"] == {"epochs": 2}
    assert cfg["attack"] == "fgsm"
    assert main(["fit", "--checkpoint", "x.pt", "--dry-run", "--set", "no_such_field=1"]) == 2


def test_progress_bars_do_not_flood_a_log_file():
    """Standard error is not a terminal here (as in a log file): a bar over 5,000 updates,
    its postfix set on each, writes a handful of lines, not thousands."""
    import io

    from interpretgan.progress import progress_bar

    out = io.StringIO()
    bar = progress_bar(range(5000), file=out, desc="steps")
    for i in bar:
        bar.set_postfix({"loss": f"{i:.3f}"}, refresh=False)
    assert 1 <= out.getvalue().count("\r") <= 3
    quiet = io.StringIO()
    for _ in progress_bar(range(10), enabled=False, file=quiet):
        pass
    assert quiet.getvalue() == ""


def test_run_judge_checked_before_the_run_folder(tmp_path, caplog):
    run = tmp_path / "run"
    assert main(["run", "--judge", str(tmp_path / "missing.pt"), "--run-dir", str(run), "--dry-run"]) == 2
    assert "judge must be an existing checkpoint file" in caplog.text
    judge = tmp_path / "judge.pt"
    judge.write_bytes(b"x")
    # the two trained classifiers judge each other: --judge is for a user's model
    assert main(["run", "--judge", str(judge), "--run-dir", str(run)]) == 2
    assert "--judge is for your own model" in caplog.text
    assert not run.exists()


def test_judge_of_another_input_size_fails_in_one_line():
    import torch
    import torch.nn as nn

    from interpretgan.pipeline import _judge_fits

    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 10))
    wrong = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))  # takes 8×8 images
    classes = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x = torch.zeros(2, 1, 4, 4)
    _judge_fits(nn.Sequential(nn.Flatten(), nn.Linear(16, 10)), model, x, "judge j.pt")
    with pytest.raises(ValueError, match="does not take the model's input") as e:
        _judge_fits(wrong, model, x, "judge j.pt")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="same input size and classes"):
        _judge_fits(classes, model, x, "judge j.pt")


def test_generator_seeds_option_reaches_the_fit_config(capsys):
    import json

    assert main(["run", "--generator-seeds", "3", "--dry-run"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["fit_overrides"]["generator_seeds"] == [0, 1, 2]
    assert main(["run", "--generator-seeds", "0", "--dry-run"]) == 2  # one line, no work


def test_layers_of_a_model_file_finds_its_input_side(tmp_path, capsys, caplog):
    """A 28-px model file is read at 28 px without --input-size; a model that takes none of the
    sides tried is one line naming them and the flag."""
    from pathlib import Path
    own = Path(__file__).resolve().parent.parent / "examples" / "own_model.py"
    assert main(["layers", "--model-file", f"{own}:build"]) == 0
    assert "fc2" in capsys.readouterr().out
    odd = tmp_path / "odd.py"
    odd.write_text("import torch.nn as nn\n\ndef build():\n"
                   "    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 17 * 17, 10))\n")
    assert main(["layers", "--model-file", f"{odd}:build"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "(1, 1, 32, 32)" in errors[0] and "(1, 1, 28, 28)" in errors[0]
    assert "--input-size" in errors[0]
    assert main(["layers", "--model-file", f"{odd}:build", "--input-size", "19"]) == 0
