"""Reliability: safe checkpoint loading, durable writes, the run-folder lock, temp-file sweep,
settings checked before any work, non-finite results stopped, one-line errors."""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from interpretgan import models, runs
from interpretgan.attacks import Attack, get_attack
from interpretgan.cli import main
from interpretgan.config import (RUN_PRESETS, ConfigError, DataConfig, FitConfig, TrainConfig,
                                 merge, parse_assignments, resolve_run, validate)
from interpretgan.data import ImageDataset
from interpretgan.runs import (NonFiniteError, RunLock, RunLockedError, UnsafeCheckpointError,
                               load_checkpoint, save_checkpoint, sweep_temp, write_json)
from interpretgan.training import train_classifier

SRC = str(Path(__file__).resolve().parents[1] / "src")


# --------------------------------------------------------------------------- malicious pickles
class _MakeMarker:
    """Unpickling this creates a folder: what a hostile checkpoint could do instead."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture(params=["zip", "legacy", "pickle"])
def evil(request, tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    doc = {"model": "smallcnn", "model_kwargs": {}, "state_dict": _MakeMarker(marker)}
    if request.param == "zip":
        torch.save(doc, path)
    elif request.param == "legacy":
        torch.save(doc, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(doc))
    return path, marker


def test_malicious_checkpoint_is_refused_without_running_code(evil):
    path, marker = evil
    with pytest.raises(UnsafeCheckpointError, match="refusing to load") as e:
        load_checkpoint(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UnsafeCheckpointError):
        models.load_classifier(path)
    assert not marker.exists()


def test_malicious_checkpoint_through_the_commands(evil, tmp_path, caplog, monkeypatch, cache):
    path, marker = evil
    assert main(["evaluate", "--checkpoint", str(path), "--out", str(tmp_path / "ev")]) == 2
    assert main(["layers", "--checkpoint", str(path)]) == 2
    assert main(["fit", "--checkpoint", str(path), "--run-dir", str(tmp_path / "fit")]) == 2
    user = tmp_path / "user_model.py"
    user.write_text("from interpretgan import models\n\ndef build():\n"
                    "    return models.create('smallcnn')\n")
    assert main(["run", "--model-file", f"{user}:build", "--checkpoint", str(path),
                 "--run-dir", str(tmp_path / "run")]) == 2
    assert not marker.exists()
    assert caplog.text.count("refusing to load") == 4
    assert "Traceback" not in caplog.text


def test_named_global_in_the_message(tmp_path):
    path = tmp_path / "np.pt"
    torch.save({"a": np.zeros(3)}, path)
    with pytest.raises(UnsafeCheckpointError, match="numpy"):
        load_checkpoint(path)


def test_damaged_checkpoint_is_one_clear_line(tmp_path):
    p = save_checkpoint(tmp_path / "c.pt", {"w": torch.ones(3)})
    p.write_bytes(p.read_bytes()[:50])
    with pytest.raises(ValueError, match="not a readable checkpoint") as e:
        load_checkpoint(p)
    assert "\n" not in str(e.value)


def test_save_refuses_what_could_not_be_loaded_safely(tmp_path):
    with pytest.raises(UnsafeCheckpointError, match="numpy"):
        save_checkpoint(tmp_path / "x.pt", {"a": np.zeros(2)})
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temp file


# --------------------------------------------------------------------------- every kind we save
def test_rng_state_round_trips_exactly_through_a_checkpoint(tmp_path):
    import random

    runs.seed_everything(3)
    random.random(), np.random.rand(), np.random.randn(), torch.rand(2)  # a cached gaussian too
    p = save_checkpoint(tmp_path / "r.pt", {"rng": runs.rng_state()})
    want = (random.random(), np.random.rand(), np.random.randn(), torch.rand(3))
    runs.seed_everything(99)
    runs.set_rng_state(load_checkpoint(p)["rng"])
    got = (random.random(), np.random.rand(), np.random.randn(), torch.rand(3))
    assert got[:3] == want[:3] and torch.equal(got[3], want[3])


def _tiny_train(shared_cache, **kw) -> TrainConfig:
    base = TrainConfig(data=DataConfig(cache_dir=str(shared_cache), train_subset=64, test_subset=32),
                       epochs=2, batch_size=32, lr=0.05, lr_milestones=(), seed=1)
    return merge(base, kw)


def test_training_files_load_weights_only(mnist_small, shared_cache, tmp_path):
    # ATTA's resume file: perturbation store, SGD state, RNG states, config
    cfg = _tiny_train(shared_cache, method="atta-trades", step_size=0.1)
    train_classifier(cfg, tmp_path / "a", progress=False, stop_after=1)
    last = tmp_path / "a" / "checkpoints" / "last.pt"
    assert runs.unsafe_globals(last) == []
    ck = torch.load(last, weights_only=True)
    assert ck["method_state"]["delta"].shape == (64, 1, 32, 32) and ck["epoch"] == 1
    m = train_classifier(cfg, tmp_path / "a", progress=False)  # resumes from it
    final = torch.load(tmp_path / "a" / "checkpoints" / "final.pt", weights_only=True)
    assert final["metrics"] == m and final["config"]["method"] == "atta-trades"


def test_fit_dstar_and_feature_net_files_load_weights_only(tmp_path, monkeypatch):
    from interpretgan.fitting import fit_generators, layer_dirname
    from interpretgan.metrics import feature_net
    from interpretgan.diagnosis.diagnose import build_dstar

    torch.manual_seed(0)
    f = models.create("smallcnn").eval()
    ds = ImageDataset((torch.rand(32, 1, 32, 32) * 255).to(torch.uint8), torch.arange(32) % 10)
    cfg = FitConfig(code_dim=8, g_channels=(8, 8, 8, 8), d_channels=(8, 8, 8, 8), c_width_mult=0.25,
                    steps_per_scale=(1, 1, 1, 2), batch_size=8)
    fit_generators(f, ds, ds.images[:8].float() / 255, cfg, tmp_path / "fit", ["classifier.fc3"],
                   progress=False)
    d = tmp_path / "fit" / layer_dirname("classifier.fc3")
    for p in [d / "last.pt", *d.glob("scale*.pt")]:
        assert runs.unsafe_globals(p) == [], p
        torch.load(p, weights_only=True)
    doc = build_dstar(f, ds, "pgd-1", "mnist", 8, 0, tmp_path / "dstar.pt", progress=False)
    back = torch.load(tmp_path / "dstar.pt", weights_only=True)
    assert torch.equal(back["x_adv"], doc["x_adv"]) and back["attack"] == "pgd-1"
    net = feature_net(ds, "tiny", cache_dir=tmp_path / "c")
    again = feature_net(ds, "tiny", cache_dir=tmp_path / "c")  # from the cache
    torch.testing.assert_close(again.head.weight, net.head.weight)


# --------------------------------------------------------------------------- final.pt / metrics.json
def test_kill_between_final_and_metrics_is_repaired(mnist_small, shared_cache, tmp_path):
    cfg = _tiny_train(shared_cache, epochs=1)
    m = train_classifier(cfg, tmp_path / "r", progress=False)
    (tmp_path / "r" / "metrics.json").unlink()  # the kill window: final.pt saved, no metrics.json
    stamp = (tmp_path / "r" / "checkpoints" / "final.pt").stat().st_mtime_ns
    epochs = []
    again = train_classifier(cfg, tmp_path / "r", progress=False, on_epoch=epochs.append)
    assert again == m and epochs == []  # reused, not retrained
    assert json.loads((tmp_path / "r" / "metrics.json").read_text()) == m
    assert (tmp_path / "r" / "checkpoints" / "final.pt").stat().st_mtime_ns == stamp


# --------------------------------------------------------------------------- durable writes
def test_writes_fsync_file_and_folder_and_use_the_umask(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.path.isdir(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else None)
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    old = os.umask(0o022)
    try:
        p = runs.atomic_write_bytes(tmp_path / "a.txt", b"x")
        q = save_checkpoint(tmp_path / "b.pt", {"w": torch.ones(2)})
        r = write_json(tmp_path / "c.json", {"a": 1})
    finally:
        os.umask(old)
    for f in (p, q, r):
        assert f.stat().st_mode & 0o777 == 0o644
    assert synced.count(True) == 3 and synced.count(False) == 3  # each file, then its folder


def test_write_json_is_strict(tmp_path):
    with pytest.raises(NonFiniteError, match=r"c\.json.*a\[1\]\.b"):
        write_json(tmp_path / "c.json", {"a": [1, {"b": float("nan")}]})
    assert not (tmp_path / "c.json").exists()
    with pytest.raises(NonFiniteError, match="loss"):
        runs.append_jsonl(tmp_path / "m.jsonl", {"loss": float("inf")})
    with pytest.raises(NonFiniteError, match="logits of D"):
        runs.check_finite(torch.tensor([1.0, float("nan")]), "logits of D")
    runs.check_finite(torch.ones(3), "fine")


def test_sweep_removes_only_our_temp_files(tmp_path):
    ours = [tmp_path / ".final.pt.ab_9x0z1.tmp", tmp_path / "a" / "b" / ".last.pt.q1w2e3r4.tmp"]
    others = [tmp_path / "notes.tmp", tmp_path / ".x.tmp", tmp_path / "final.pt"]
    for p in ours + others:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    assert sorted(sweep_temp(tmp_path)) == sorted(ours)
    assert all(p.exists() for p in others) and not any(p.exists() for p in ours)


def test_training_sweeps_stale_temp_files(mnist_small, shared_cache, tmp_path):
    stale = tmp_path / "r" / "checkpoints" / ".last.pt.zzzzzzzz.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"\0" * 1000)
    train_classifier(_tiny_train(shared_cache, epochs=1), tmp_path / "r", progress=False)
    assert not stale.exists()
    assert not (tmp_path / "r" / ".lock").exists()  # released


# --------------------------------------------------------------------------- lock
_HOLD = """
import sys, time
sys.path.insert(0, {src!r})
from interpretgan.runs import RunLock
with RunLock({root!r}):
    print("held", flush=True)
    time.sleep(60)
"""


def test_second_run_into_a_locked_folder_is_refused(tmp_path, caplog):
    root = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", _HOLD.format(src=SRC, root=str(root))],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"in use by PID {proc.pid}") as e:
            with RunLock(root):
                pass
        assert "remove" in str(e.value) and ".lock" in str(e.value)
        t0 = time.perf_counter()
        assert main(["train", "--run-dir", str(root), "--epochs", "1"]) == 2
        assert time.perf_counter() - t0 < 10
        assert f"PID {proc.pid}" in caplog.text
    finally:
        proc.kill()  # SIGKILL: the holder cannot release the lock
        proc.wait()
    assert (root / ".lock").exists()
    with RunLock(root):  # a dead holder's lock is taken over
        assert json.loads((root / ".lock").read_text())["pid"] == os.getpid()
    assert not (root / ".lock").exists()


def test_lock_is_reentrant_released_on_error_and_names_other_hosts(tmp_path):
    with pytest.raises(RuntimeError):
        with RunLock(tmp_path):
            with RunLock(tmp_path):
                pass
            assert (tmp_path / ".lock").exists()  # still held by the outer block
            raise RuntimeError("boom")
    assert not (tmp_path / ".lock").exists()
    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": socket.gethostname() + "-other"}))
    with pytest.raises(RunLockedError, match="-other"):
        with RunLock(tmp_path):
            pass
    # a live PID from before a reboot, and an empty lock file left by a power cut: stale
    (tmp_path / ".lock").write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(),
                                                "boot": "another-boot"}))
    if runs._boot_id() is not None:
        with RunLock(tmp_path):
            pass
    (tmp_path / ".lock").write_text("")
    with pytest.raises(RunLockedError):  # maybe still being written
        with RunLock(tmp_path):
            pass
    os.utime(tmp_path / ".lock", (time.time() - 60, time.time() - 60))
    with RunLock(tmp_path):
        pass
    assert not (tmp_path / ".lock").exists()


# --------------------------------------------------------------------------- settings
def test_bad_values_are_caught_by_merge_and_validate():
    with pytest.raises(ConfigError, match=r"^fit\.batch_size must be an integer, got 'abc'$"):
        resolve_run(merge(RUN_PRESETS.get("quick"),
                          {"fit_overrides": parse_assignments(["batch_size=abc"])}))
    with pytest.raises(ConfigError, match="eps must be in"):
        validate(TrainConfig(eps=1.5))
    with pytest.raises(ConfigError, match="epochs must be at least 1"):
        validate(merge(TrainConfig(), {"epochs": 0}))
    with pytest.raises(ConfigError, match="lr must be a number"):
        merge(FitConfig(), parse_assignments(["lr=NaN"]))
    assert merge(TrainConfig(), {"lr": 1}).lr == 1.0 and isinstance(merge(TrainConfig(), {"lr": 1}).lr, float)
    with pytest.raises(ConfigError, match="steps_per_scale"):
        validate(FitConfig(steps_per_scale=(1, 1)))
    with pytest.raises(ValueError, match="no steps"):
        get_attack("pgd-0")
    with pytest.raises(ValueError, match="at least 1 step"):
        Attack("pgd", 0.3, 0.01, 0)
    ds = ImageDataset(torch.zeros(10, 1, 4, 4, dtype=torch.uint8), torch.zeros(10, dtype=torch.long))
    for n in (-9, 0):  # -9 used to give the last image only, 0 an empty set
        with pytest.raises(ValueError, match="at least 1"):
            ds.subset(n)
    resolve_run(RUN_PRESETS.get("paper"))  # the presets are valid


BAD_RUN = [
    (["--set", "fit.batch_size=abc"], "fit.batch_size must be an integer, got 'abc'"),
    (["--set", "fit.foo=1"], "unknown setting fit.foo"),
    (["--set", "train.eps=1.5"], "train.eps must be in (0, 1]"),
    (["--set", "train.epochs=0"], "train.epochs must be at least 1"),
    (["--set", "train.model.name=resnet"], "unknown model 'resnet'"),
    (["--dstar-images", "-9900"], "dstar_images must be at least 1"),
    (["--dstar-images", "0"], "dstar_images must be at least 1"),
    (["--set", "attack=pgd-0"], "takes no steps"),
    (["--set", "seed=abc"], "seed must be an integer"),
]


@pytest.mark.parametrize("dry", [True, False])
def test_bad_run_settings_fail_before_any_work(dry, tmp_path, caplog, cache):
    t0 = time.perf_counter()
    for args, msg in BAD_RUN:
        root = tmp_path / "run"
        caplog.clear()
        assert main(["run", "--run-dir", str(root), *args, *(["--dry-run"] if dry else [])]) == 2, args
        assert msg in caplog.text, (args, caplog.text)
        assert not root.exists(), args  # nothing trained, not even the folder
    assert "Traceback" not in caplog.text
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize("args,msg", [
    (["train", "--epochs", "0"], "epochs must be at least 1"),
    (["train", "--batch-size", "0"], "batch_size must be at least 1"),
    (["train", "--lr", "-1"], "lr must be greater than 0"),
    (["train", "--train-subset", "-5"], "train_subset must be at least 1"),
    (["train", "--eval-attack", "pgd-0"], "takes no steps"),
    (["fit", "--checkpoint", "x.pt", "--set", "batch_size=abc"], "batch_size must be an integer"),
    (["fit", "--checkpoint", "x.pt", "--set", "foo=1"], "unknown setting foo"),
    (["study", "pooling", "--set", "train.eps=1.5"], "train.eps must be in (0, 1]"),
    (["study", "pooling", "--epochs", "0"], "train.epochs must be at least 1"),
    (["study", "pooling", "--set", "pools=[\"max\",\"median\"]"], "pools must be"),
])
@pytest.mark.parametrize("dry", [True, False])
def test_bad_settings_of_other_commands(args, msg, dry, tmp_path, caplog, cache):
    root = tmp_path / "out"
    assert main([*args, "--run-dir", str(root), *(["--dry-run"] if dry else [])]) == 2
    assert msg in caplog.text and "Traceback" not in caplog.text
    assert not root.exists()


def test_evaluate_rejects_a_zero_step_attack_before_loading(tmp_path, caplog):
    p = save_checkpoint(tmp_path / "c.pt", models.classifier_state(models.create("smallcnn")))
    assert main(["evaluate", "--checkpoint", str(p), "--attacks", "pgd-0"]) == 2
    assert "takes no steps" in caplog.text
    assert main(["evaluate", "--checkpoint", str(p), "--subset", "0"]) == 2
    assert "subset must be at least 1" in caplog.text


@pytest.mark.parametrize("args,msg", [
    (["run", "--generator-seeds", "10000000"], "--generator-seeds takes at most 100 seeds"),
    (["run", "--set", "fit.generator_seeds=[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,"
      "22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,"
      "54,55,56,57,58,59,60,61,62,63,64,65,66,67,68,69,70,71,72,73,74,75,76,77,78,79,80,81,82,83,84,85,"
      "86,87,88,89,90,91,92,93,94,95,96,97,98,99,100]"], "generator_seeds must be at most 100 seeds, got 101"),
    (["run", "--seed", str(2**32)], "seed must be at most 4294967295"),
    (["run", "--set", "fit.generator_seeds=[4294967296]"], "fit.generator_seeds must be at most 4294967295"),
    (["run", "--set", "train.epochs=1000000000"], "train.epochs must be at most 100,000"),
    (["run", "--set", "train.eval_batch_size=100000000"], "train.eval_batch_size must be at most 65,536"),
    (["run", "--set", "fit.batch_size=10000000"], "fit.batch_size must be at most 65,536"),
    (["run", "--set", "fit.steps_per_scale=[1,1,1,99999999999]"], "fit.steps_per_scale must be at most"),
    (["run", "--set", "explain_images=100000"], "explain_images must be at most 1,000"),
    (["run", "--device", "cuda:99"], "'cuda:99' asked for"),
    (["train", "--batch-size", "100000000"], "batch_size must be at most 65,536"),
    (["train", "--seed", str(2**40)], "seed must be at most 4294967295"),
    (["train", "--device", "cuda:99"], "'cuda:99' asked for"),
    (["fit", "--checkpoint", "x.pt", "--generator-seeds", "101"], "at most 100 seeds"),
    (["fit", "--checkpoint", "x.pt", "--device", "cuda:99"], "'cuda:99' asked for"),
    (["study", "pooling", "--device", "cuda:99"], "'cuda:99' asked for"),
    (["study", "pooling", "--set", "seeds=[4294967296]"], "seeds must be at most 4294967295"),
])
@pytest.mark.parametrize("dry", [True, False])
def test_integer_bounds_and_the_device_are_checked_before_any_work(args, msg, dry, tmp_path, caplog,
                                                                    capsys, cache):
    """Every integer setting has an upper bound (seeds 32-bit), and a device that does not
    exist is refused, --dry-run included: one line, nothing written, no flood of output."""
    root = tmp_path / "out"
    assert main([*args, "--run-dir", str(root), *(["--dry-run"] if dry else [])]) == 2
    assert msg in caplog.text and "Traceback" not in caplog.text
    assert not root.exists() and len(capsys.readouterr().out) < 1000


def test_explain_and_evaluate_bound_their_counts(tmp_path, caplog):
    assert main(["explain", "--run", str(tmp_path / "r"), "--images", "100000"]) == 2
    assert main(["evaluate", "--checkpoint", str(tmp_path / "c.pt"), "--batch-size", "10000000"]) == 2
    assert "--images must be in 1 … 1,000" in caplog.text and "batch_size must be at most 65,536" in caplog.text
    assert not (tmp_path / "r").exists()


def test_the_largest_seed_is_accepted(tmp_path, capsys):
    assert main(["train", "--seed", str(2**32 - 1), "--run-dir", str(tmp_path / "r"), "--dry-run"]) == 0
    assert '"seed": 4294967295' in capsys.readouterr().out


# --------------------------------------------------------------------------- layer names
class _Twice(torch.nn.Module):
    """One ReLU called twice per forward."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)
        self.act = torch.nn.ReLU()

    def forward(self, x):
        return self.act(self.fc(self.act(x)))


def test_layer_names_are_traced_and_spelled_one_way():
    from interpretgan.layers import LayerNameError, canonical_names

    net, x = models.create("smallcnn").eval(), torch.rand(2, 1, 32, 32)
    assert canonical_names(net, x, ["classifier.fc3", "feature_extractor.relu1@0"]) == [
        "classifier.fc3", "feature_extractor.relu1"]
    with pytest.raises(LayerNameError, match="'feature_extractor.relu1' and 'feature_extractor.relu1@0' "
                                             "name the same layer"):
        canonical_names(net, x, ["feature_extractor.relu1", "feature_extractor.relu1@0"])
    with pytest.raises(LayerNameError, match="not reached"):
        canonical_names(net, x, ["feature_extractor.relu1@9"])
    twice = _Twice()
    assert canonical_names(twice, torch.rand(2, 4), ["act@1", "act@0"]) == ["act@1", "act@0"]
    with pytest.raises(LayerNameError, match="called 2 times"):
        canonical_names(twice, torch.rand(2, 4), ["act"])


@pytest.mark.parametrize("layers,msg", [
    ("feature_extractor.relu1@9", "not reached"),
    ("feature_extractor.relu1,feature_extractor.relu1@0", "name the same layer"),
])
def test_a_layer_never_reached_fails_before_training(layers, msg, mnist_small, shared_cache, tmp_path,
                                                      caplog, monkeypatch):
    from test_pipeline import tiny_cli

    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    root = tmp_path / "run"
    assert main([*tiny_cli(root, "cpu"), "--layers", layers]) == 2
    assert msg in caplog.text and "Traceback" not in caplog.text
    assert not root.exists()  # no classifier trained


def test_the_run_uses_one_spelling_per_layer(mnist_small, shared_cache, tmp_path, monkeypatch):
    from interpretgan.run import pipeline
    from test_pipeline import tiny

    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    seen = []
    monkeypatch.setattr(pipeline, "_run_stages", lambda job: seen.append(job.cfg.layers) or {})
    cfg = dataclasses.replace(tiny(), layers=("feature_extractor.relu1@0", "classifier.fc3"))
    pipeline.run_main(cfg, tmp_path / "run", progress=False)
    assert seen == [("feature_extractor.relu1", "classifier.fc3")]  # cached as one layer


# --------------------------------------------------------------------------- non-finite
def test_nan_loss_stops_training_naming_the_model(mnist_small, shared_cache, tmp_path, monkeypatch,
                                                  caplog):
    from interpretgan.robust import methods

    real = methods.natural_step
    calls = []

    def poisoned(*a, **kw):
        out = real(*a, **kw)
        calls.append(1)
        return {**out, "loss": float("nan")} if len(calls) == 2 else out

    monkeypatch.setattr(methods, "natural_step", poisoned)
    with pytest.raises(NonFiniteError, match=r"smallcnn \(natural\).*loss is nan at epoch 1, batch 2"):
        train_classifier(_tiny_train(shared_cache), tmp_path / "r", progress=False)
    assert not (tmp_path / "r" / "checkpoints" / "final.pt").exists()
    calls.clear()  # the command line: one line, status 2
    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    assert main(["-q", "train", "--run-dir", str(tmp_path / "r2"), "--epochs", "1",
                 "--train-subset", "64", "--test-subset", "32", "--batch-size", "32"]) == 2
    assert "loss is nan" in caplog.text and "Traceback" not in caplog.text


# --------------------------------------------------------------------------- command line
def test_interrupt_and_os_errors_are_one_line(monkeypatch, caplog):
    from interpretgan import cli

    def interrupted(a):
        raise KeyboardInterrupt

    def read_only(a):
        raise PermissionError(13, "Permission denied", "/runs/main/config.json")

    monkeypatch.setattr(cli, "cmd_models", interrupted)
    assert main(["models"]) == 130
    assert "interrupted; rerun the same command to resume" in caplog.text
    monkeypatch.setattr(cli, "cmd_models", read_only)
    assert main(["models"]) == 2
    assert "Permission denied: /runs/main/config.json" in caplog.text
    assert "Traceback" not in caplog.text


def test_ctrl_c_in_a_real_process_exits_130(tmp_path):
    code = textwrap.dedent(f"""
        import sys, signal, threading, os
        sys.path.insert(0, {SRC!r})
        from interpretgan import cli
        def slow(a):
            os.kill(os.getpid(), signal.SIGINT)
            import time; time.sleep(10)
        cli.cmd_models = slow
        sys.exit(cli.main(["models"]))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 130
    assert "interrupted; rerun the same command to resume" in r.stderr
    assert "Traceback" not in r.stderr
