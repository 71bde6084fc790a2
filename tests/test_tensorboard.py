"""TensorBoard events (``log_dir``, ``--tensorboard``): the training rows and the fit's losses,
agreement and explanations written where the docs say, equal to what metrics.jsonl holds,
without changing any result; a missing package is a one-line error before any work."""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import sys

import numpy as np
import pytest
import torch

from conftest import need
from interpretgan.config import DataConfig, TrainConfig
from interpretgan.fitting import fit_generators, load_generators, member_features
from interpretgan.gan import to_classifier
from interpretgan.runs import load_checkpoint, read_jsonl
from interpretgan.runtime.tensorboard import (TensorBoard, TensorBoardMissingError, make_grid,
                                              require_tensorboard)
from interpretgan.training import train_classifier
from test_gan import LAYERS, TINY, train_toy

PAD = 2  # make_grid's padding


def _events(folder):
    """Every event under ``folder``: ``(scalars {tag: [(step, value)]}, images {tag: [event]})``."""
    need("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = list(folder.glob("events.out.tfevents.*"))
    assert files, f"no event file in {folder}"
    ea = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    ea.Reload()
    tags = ea.Tags()
    scalars = {t: [(e.step, e.value) for e in ea.Scalars(t)] for t in tags["scalars"]}
    return scalars, {t: ea.Images(t) for t in tags["images"]}


def _f32(v: float) -> float:
    """``v`` as TensorBoard stores it (float32)."""
    return float(np.float32(v))


def _pixels(event) -> np.ndarray:
    """An image event's pixels, (H, W, channels) floats in [0, 1]."""
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(event.encoded_image_string)), dtype=np.float64) / 255


# --------------------------------------------------------------------------- the writer
def test_make_grid_tiles_rows_and_pads():
    x = torch.arange(5, dtype=torch.float32).view(5, 1, 1, 1).expand(5, 1, 3, 4) / 10
    g = make_grid(x, nrow=3, padding=PAD, pad_value=1.0)
    assert g.shape == (1, 2 * (3 + PAD) + PAD, 3 * (4 + PAD) + PAD)
    for i in range(5):
        r, k = divmod(i, 3)
        top, left = PAD + r * (3 + PAD), PAD + k * (4 + PAD)
        assert torch.all(g[:, top: top + 3, left: left + 4] == i / 10), i
    assert torch.all(g[:, PAD + 3 + PAD:, PAD + 2 * (4 + PAD):] == 1.0)  # the empty sixth tile
    assert torch.all(g[:, :PAD] == 1.0) and torch.all(g[:, :, :PAD] == 1.0)
    assert make_grid(x[:2], nrow=8).shape == (1, 3 + 2 * PAD, 2 * (4 + PAD) + PAD)  # one short row
    with pytest.raises(ValueError, match="N, C, H, W"):
        make_grid(torch.zeros(3, 4, 4))


def test_no_log_dir_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with TensorBoard(None) as tb:
        assert not tb.enabled
        tb.scalars(1, {"a": 1.0})
        tb.images(1, "b", torch.rand(2, 1, 4, 4))
    assert list(tmp_path.iterdir()) == []  # (SummaryWriter's default would be ./runs)


def test_scalars_and_images_are_read_back(tmp_path):
    need("tensorboard")
    with TensorBoard(tmp_path / "tb") as tb:
        tb.scalars(3, {"g/a": 0.25, "g/flag": True, "g/name": "x", "g/n": 7})
        tb.images(3, "g/img", torch.rand(3, 1, 5, 6), nrow=2)
    scalars, images = _events(tmp_path / "tb")
    assert scalars == {"g/a": [(3, 0.25)], "g/n": [(3, 7.0)]}  # booleans and strings are skipped
    (img,) = images["g/img"]
    assert (img.step, img.width, img.height) == (3, 2 * (6 + PAD) + PAD, 2 * (5 + PAD) + PAD)


def _no_tensorboard(monkeypatch):
    """Imports of tensorboard fail, as where the package is not installed."""
    for name in ("tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, name, None)


def test_a_missing_package_is_a_one_line_error(tmp_path, monkeypatch):
    _no_tensorboard(monkeypatch)
    with pytest.raises(TensorBoardMissingError, match=r"needs the tensorboard package: pip install tensorboard") as e:
        TensorBoard(tmp_path / "tb")
    assert isinstance(e.value, RuntimeError) and "\n" not in str(e.value)
    assert not (tmp_path / "tb").exists()
    with pytest.raises(TensorBoardMissingError):
        require_tensorboard()
    TensorBoard(None).close()  # no log folder: no package needed


def test_a_missing_package_stops_the_commands_before_any_work(tmp_path, monkeypatch, caplog):
    from interpretgan.cli import main
    from interpretgan.pipeline import run_main
    from test_pipeline import tiny

    _no_tensorboard(monkeypatch)
    out = tmp_path / "r"
    assert main(["-q", "train", "--device", "cpu", "--run-dir", str(out), "--epochs", "1",
                 "--train-subset", "64", "--test-subset", "32", "--tensorboard"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "pip install tensorboard" in errors[0] and "\n" not in errors[0]
    assert not out.exists()  # nothing written
    assert main(["-q", "fit", "--device", "cpu", "--checkpoint", str(tmp_path / "none.pt"),
                 "--run-dir", str(out), "--tensorboard"]) == 2  # before the checkpoint is read
    assert "pip install tensorboard" in caplog.records[-1].getMessage() and not out.exists()
    with pytest.raises(TensorBoardMissingError):
        run_main(tiny(), tmp_path / "main", progress=False, device="cpu", tensorboard=True)
    assert not (tmp_path / "main").exists()


# --------------------------------------------------------------------------- training
def _train_cfg(shared_cache) -> TrainConfig:
    return TrainConfig(data=DataConfig(cache_dir=str(shared_cache), train_subset=128, test_subset=64),
                       epochs=2, batch_size=64, lr=0.05, lr_milestones=(1,), seed=1)


def test_training_writes_every_epoch_row_and_changes_nothing(mnist_small, shared_cache, tmp_path):
    cfg = _train_cfg(shared_cache)
    plain = train_classifier(cfg, tmp_path / "plain", progress=False)
    logged = train_classifier(cfg, tmp_path / "logged", progress=False, log_dir=tmp_path / "tb")
    rows = read_jsonl(tmp_path / "logged" / "metrics.jsonl")
    scalars, images = _events(tmp_path / "tb")
    fields = [k for k in rows[0] if k != "epoch"]
    assert {"lr", "train_loss", "train_acc", "test_acc", "elapsed_s"} <= set(fields)
    assert set(scalars) == {f"train/{k}" for k in fields} and not images
    for k in fields:  # one value per epoch, the row's
        assert scalars[f"train/{k}"] == [(r["epoch"], _f32(r[k])) for r in rows], k
    assert [s for s, _ in scalars["train/lr"]] == [1, 2] and scalars["train/lr"][1][1] == _f32(0.005)
    # logging changes no result: the same weights and accuracy as without it
    assert logged["test_accuracy"] == plain["test_accuracy"]
    a = load_checkpoint(tmp_path / "plain" / "checkpoints" / "final.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "logged" / "checkpoints" / "final.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_train_command_writes_under_its_run_folder(mnist_small, shared_cache, tmp_path, monkeypatch):
    from interpretgan.cli import main

    need("tensorboard")
    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    out = tmp_path / "r"
    assert main(["-q", "train", "--device", "cpu", "--run-dir", str(out), "--epochs", "1",
                 "--train-subset", "64", "--test-subset", "32", "--tensorboard"]) == 0
    (row,) = read_jsonl(out / "metrics.jsonl")
    scalars, _ = _events(out / "tensorboard" / "train")
    assert scalars["train/test_acc"] == [(1, _f32(row["test_acc"]))]
    assert scalars["train/train_loss"] == [(1, _f32(row["train_loss"]))]


# --------------------------------------------------------------------------- fitting
FIT = dataclasses.replace(TINY, steps_per_scale=(1, 1, 1, 3), ckpt_every=3, amp="off")  # 6 steps, D from step 3
SCALE_ENDS = [1, 2, 3, 6]
ROWS = [1, 2, 3, 4, 6]  # every 2 steps and at the end of every scale


@pytest.fixture(scope="module")
def toy():
    """A SmallCNN trained 2 epochs on the toy bars (a classifier; how good does not matter)."""
    return train_toy(2)


@pytest.fixture(scope="module")
def fits(toy, tmp_path_factory):
    """The fit without and with TensorBoard: ``(plain generators, logged generators, logged
    fit folder, its events folder)``."""
    f, ds, ex = toy
    root, held_out = tmp_path_factory.mktemp("fits"), ex[:16]
    plain = fit_generators(f, ds, held_out, FIT, root / "plain", LAYERS, progress=False, log_every=2)
    logged = fit_generators(f, ds, held_out, FIT, root / "logged", LAYERS, progress=False, log_every=2,
                            log_dir=root / "tb")
    return plain, logged, root / "logged", root / "tb"


def test_fit_writes_each_members_losses_and_agreement(fits):
    _, _, out, tb = fits
    rows = read_jsonl(out / "metrics.jsonl")
    scalars, _ = _events(tb)
    assert [r["step"] for r in rows] == ROWS
    for n in LAYERS:
        assert scalars[f"{n}/agreement"] == [(r["step"], _f32(r[f"{n}/agreement200"])) for r in rows]
        losses = {t.split("/", 1)[1] for t in scalars if t.startswith(f"{n}/")} - {"agreement"}
        assert {"l_i", "g_loss", "d_loss"} <= losses
        for k in losses:  # every row that holds the loss (D and G's only after the warm-up)
            assert scalars[f"{n}/{k}"] == [(r["step"], _f32(r[f"{n}/{k}"])) for r in rows
                                           if f"{n}/{k}" in r], k
        assert len(scalars[f"{n}/l_i"]) == len(rows)
    assert {t.split("/", 1)[0] for t in scalars} == set(LAYERS)


def test_fit_writes_explanations_at_the_end_of_every_scale(fits, toy):
    _, _, out, tb = fits
    f, _, ex = toy
    _, images = _events(tb)
    assert set(images) == {f"{n}/explanations" for n in LAYERS}
    side = 32 + PAD  # 8 held-out images over their explanations, at the classifier's 32 px
    for n in LAYERS:
        events = images[f"{n}/explanations"]
        assert [e.step for e in events] == SCALE_ENDS, n
        assert all((e.width, e.height) == (8 * side + PAD, 2 * side + PAD) for e in events)
    # the last grid: the first 8 held-out images, and what the saved generators make of them
    gans = load_generators(out)
    with torch.no_grad():
        feats = member_features(f, ex[:8], LAYERS)
        for n in LAYERS:
            png = _pixels(images[f"{n}/explanations"][-1])[..., 0]
            x_hat = to_classifier(gans[n].explain(feats[n]), 32)
            for row, want in ((0, ex[:8]), (1, x_hat)):
                for k in range(8):
                    top, left = PAD + row * side, PAD + k * side
                    got = png[top: top + 32, left: left + 32]
                    np.testing.assert_allclose(got, want[k, 0].numpy(), atol=1 / 255 + 1e-5,
                                               err_msg=f"{n} row {row} image {k}")


def test_fit_logging_changes_no_generator(fits):
    plain, logged, _, _ = fits
    for n in LAYERS:
        for (k, a), b in zip(plain[n].state_dict().items(), logged[n].state_dict().values()):
            assert torch.equal(a, b), f"{n} {k}"


# --------------------------------------------------------------------------- the main job, the CLI
def test_the_main_job_passes_its_folders_and_keeps_them_out_of_the_stage_keys(tmp_path, monkeypatch):
    """``run_main(tensorboard=True)``'s train and fit stages get RUN/tensorboard/<model>/train
    and …/fit, and every stage key is what it is without it (a cached run stays cached)."""
    from interpretgan.config import resolve_run
    from interpretgan.run import pipeline
    from interpretgan.run.checks import _trained_configs
    from interpretgan.runtime.distributed import World
    from test_pipeline import tiny

    class Recorder:  # a stage cache that records each stage's inputs and work, and runs nothing
        def __init__(self):
            self.stages = {}

        def run(self, name, inputs, outputs, fn, **kw):
            self.stages[name] = (json.dumps(inputs, sort_keys=True, default=str), fn)
            return f"key of {name}"

    got = {}
    monkeypatch.setattr(pipeline, "train_classifier", lambda *a, **kw: got.update(train=kw["log_dir"]))
    monkeypatch.setattr(pipeline, "fit_and_summarize", lambda *a, **kw: got.update(fit=kw["log_dir"]))
    monkeypatch.setattr(pipeline, "load_model", lambda *a, **kw: None)
    monkeypatch.setattr(pipeline, "load_split", lambda *a, **kw: None)
    monkeypatch.setattr(pipeline, "dstar_indices", lambda *a, **kw: None)
    cfg, root = tiny(), tmp_path / "run"
    resolved = resolve_run(cfg)
    keys = {}
    for on in (False, True):
        job, st = pipeline.Job(cfg, root, resolved, World(), tensorboard=on), Recorder()
        for key, tcfg in _trained_configs(resolved).items():
            pipeline._train_one(st, root, tcfg, key, job.world, False, job.board(key, "train"))
            pipeline._fit_stage(pipeline.ClassifierStages(st, key, root / key, cfg, resolved.fit, job.world,
                                                          False, log_dir=job.board(key, "fit")),
                                cfg, ["trained"])
            got.clear()
            for stage in ("train", "fit"):
                st.stages[f"{stage}:{key}"][1]()  # the stage's work (the library calls recorded)
            want = {p: (root / "tensorboard" / key / p if on else None) for p in ("train", "fit")}
            assert got == want, (on, key)
        keys[on] = {name: inputs for name, (inputs, _) in st.stages.items()}
    assert set(keys[True]) == {f"{s}:{k}" for s in ("train", "fit")
                               for k in ("natural", "adversarially_trained")}
    assert keys[True] == keys[False]


def test_the_flag_maps_onto_the_library(tmp_path, monkeypatch):
    from interpretgan import cli

    need("tensorboard")
    calls = []
    monkeypatch.setattr(cli, "fit_run", lambda *a, **kw: calls.append(kw["log_dir"]))
    monkeypatch.setattr(cli, "run_main", lambda *a, **kw: calls.append(kw["tensorboard"]))
    fit = ["-q", "fit", "--device", "cpu", "--checkpoint", "c.pt", "--run-dir", str(tmp_path / "f")]
    run = ["-q", "run", "--device", "cpu", "--run-dir", str(tmp_path / "m")]
    for args in (fit, fit + ["--tensorboard"], run, run + ["--tensorboard"]):
        assert cli.main(args) == 0, args
    assert calls == [None, tmp_path / "f" / "tensorboard" / "fit", False, True]
