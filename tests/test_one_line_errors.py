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
