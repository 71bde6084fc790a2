"""Errors a user can reach come as one short line (exit status 2, nothing written): a model
that fails only at larger batch sizes, a missing CelebA image."""
from __future__ import annotations

import pytest
import torch

from interpretgan.cli import main
from interpretgan.data import CelebA, DataError, batches

from test_pipeline import USER_MODEL, tiny_cli

# A model that takes at most 16 images at a time (a buffer sized for 16 rows).
SIXTEEN = USER_MODEL.replace("return self.head(self.pool(self.body(x)).flatten(1))",
                             "return self.head(self.pool(self.body(x)).flatten(1)) + torch.zeros(16, 1)[: len(x)]"
                             ).replace("import torch.nn as nn", "import torch\nimport torch.nn as nn")


def test_a_forward_that_fails_only_at_larger_batches_is_refused_before_any_work(
        tmp_path, mnist_small, shared_cache, monkeypatch, caplog):
    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    model = tmp_path / "m.py"
    model.write_text(SIXTEEN)
    ns: dict = {}
    exec(compile(SIXTEEN, "m", "exec"), ns)
    torch.save(ns["build"]().state_dict(), tmp_path / "m.pt")
    root = tmp_path / "run"
    args = tiny_cli(root, "cpu")
    args[args.index("--layers") + 1] = "body.1,head"
    assert main([*args, "--model-file", f"{model}:build", "--checkpoint", str(tmp_path / "m.pt")]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "batch of 64 images" in errors[0] and "any batch size" in errors[0]
    assert "Traceback" not in caplog.text
    assert not root.exists()  # refused before any stage


def test_a_missing_celeba_image_is_one_short_line(tiny_celeba):
    ds = CelebA(tiny_celeba, "train", size=32)
    missing = tiny_celeba / "img_align_celeba" / ds.files[1]
    missing.unlink()
    with pytest.raises(DataError) as e:  # read by DataLoader workers
        list(batches(ds, 2))
    msg = str(e.value)
    assert str(missing) in msg and "missing" in msg
    assert "\n" not in msg and "Traceback" not in msg and len(msg) < 300
    with pytest.raises(DataError, match="missing"):  # and read directly
        ds[1]


def _one_error(caplog) -> str:
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "Traceback" not in caplog.text
    return errors[0]


def test_report_and_explain_on_the_wrong_folder_say_what_is_missing(tmp_path, caplog):
    from interpretgan import models
    from interpretgan.runs import save_checkpoint
    train_run = tmp_path / "tr"  # what `interpretgan train` leaves: a classifier, no run settings
    save_checkpoint(train_run / "checkpoints" / "final.pt", models.classifier_state(models.create("smallcnn")))
    (train_run / "config.json").write_text('{"method": "natural"}')
    assert main(["report", "run", "--dir", str(train_run)]) == 2
    assert "not a run folder of `interpretgan run`" in _one_error(caplog)
    caplog.clear()
    assert main(["report", "run", "--dir", str(tmp_path / "empty")]) == 2
    assert "no config.json" in _one_error(caplog)
    caplog.clear()
    assert main(["explain", "--run", str(train_run), "--out", str(tmp_path / "e")]) == 2
    assert "has no generators" in _one_error(caplog) and "interpretgan fit --checkpoint" in caplog.text
    assert not (tmp_path / "e").exists()


def test_a_study_of_zero_seeds_is_refused_not_widened(caplog):
    assert main(["study", "pooling", "--seeds", "0", "--dry-run"]) == 2
    assert "seeds" in _one_error(caplog)


def test_a_pgd_too_short_to_reach_eps_is_named(caplog):
    from interpretgan.robust.attacks import get_attack
    get_attack("pgd-40", "mnist")
    assert not caplog.records
    get_attack("pgd-7", "mnist")
    get_attack("pgd-7", "mnist")  # once per attack
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == ["pgd-7: 7 steps of 0.01 move at most 0.07 from the random start, less than ε = 0.3; "
                      "it can be weaker than FGSM (30 steps or more reach ε)"]
