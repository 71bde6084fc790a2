"""Resume points inside an epoch, and SIGTERM: a training killed part way through an epoch
resumes from its last resume point (weights, optimizer, ATTA store, data position, RNG
states) and finishes bit-identical to an uninterrupted one; SIGTERM ends a command like
Ctrl-C (one line, the lock released) with status 143."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from interpretgan import training
from interpretgan.config import DataConfig, TrainConfig
from interpretgan.runs import load_checkpoint, read_jsonl
from interpretgan.training import train_classifier

SRC = str(Path(__file__).resolve().parents[1] / "src")
BATCHES = 6  # per epoch: 96 images in batches of 16


def _cfg(shared_cache, method: str, **kw) -> TrainConfig:
    return TrainConfig(data=DataConfig(cache_dir=str(shared_cache), train_subset=96, test_subset=32),
                       method=method, epochs=2, batch_size=16, lr=0.05, lr_milestones=(1,), seed=3,
                       step_size=0.1, **{"checkpoint_every_s": 0.0, **kw})


class _Killed(KeyboardInterrupt):
    """What the test raises in place of a kill (a BaseException, like Ctrl-C)."""


def _count_steps(monkeypatch, method: str, kill_at: int | None = None) -> list[int]:
    """Count the method's steps from here on; raise :class:`_Killed` before step ``kill_at``."""
    m = training.TRAIN_METHODS.get(method)
    real, calls = m.step, []

    def step(*a, **kw):
        calls.append(1)
        if len(calls) == kill_at:
            raise _Killed
        return real(*a, **kw)

    monkeypatch.setattr(m, "step", step)
    return calls


def _same_training(a: Path, b: Path) -> None:
    wa, wb = (load_checkpoint(p / "checkpoints" / "final.pt")["state_dict"] for p in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ra, rb = (read_jsonl(p / "metrics.jsonl") for p in (a, b))
    drop = ("train_s", "elapsed_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in ra] == \
        [{k: v for k, v in r.items() if k not in drop} for r in rb]


@pytest.mark.parametrize("method", ["natural", "atta-trades"])
def test_a_kill_inside_an_epoch_resumes_from_the_last_resume_point_bit_identically(
        method, mnist_small, shared_cache, tmp_path, monkeypatch):
    cfg = _cfg(shared_cache, method, checkpoint_every=2)
    train_classifier(cfg, tmp_path / "reference", progress=False)
    calls = _count_steps(monkeypatch, method, kill_at=BATCHES + 4)  # epoch 2, batch 4
    with pytest.raises(_Killed):
        train_classifier(cfg, tmp_path / "killed", progress=False)
    ck = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    assert (ck["epoch"], ck["within_epoch"]["batch"]) == (1, 2)  # the last resume point
    assert not (tmp_path / "killed" / ".lock").exists()
    calls.clear()
    train_classifier(cfg, tmp_path / "killed", progress=False)
    assert len(calls) == BATCHES - 2  # only the batches after the resume point ran again
    _same_training(tmp_path / "reference", tmp_path / "killed")


def test_resume_points_by_time_and_kills_in_the_first_epoch(mnist_small, shared_cache, tmp_path,
                                                           monkeypatch):
    """``checkpoint_every_s``: a resume point after every batch here; two kills in the first
    epoch (no epoch was ever finished) lose one batch each."""
    cfg = _cfg(shared_cache, "atta-trades", checkpoint_every_s=1e-9)
    train_classifier(cfg, tmp_path / "reference", progress=False)
    for kill_at in (3, 2):
        calls = _count_steps(monkeypatch, "atta-trades", kill_at=kill_at)
        with pytest.raises(_Killed):
            train_classifier(cfg, tmp_path / "killed", progress=False)
        monkeypatch.undo()
    ck = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    assert (ck["epoch"], ck["within_epoch"]["batch"]) == (0, 3)
    calls = _count_steps(monkeypatch, "atta-trades")
    train_classifier(cfg, tmp_path / "killed", progress=False)
    assert len(calls) == 2 * BATCHES - 3
    _same_training(tmp_path / "reference", tmp_path / "killed")


def test_how_often_it_checkpoints_is_no_input_of_the_run(mnist_small, shared_cache, tmp_path,
                                                         monkeypatch):
    """A run killed with one ``checkpoint_every`` resumes under another (the setting changes
    how a run is carried out, not what it computes), and the main job's stage key ignores it."""
    from interpretgan.config import result_config

    cfg = _cfg(shared_cache, "natural", checkpoint_every=2)
    _count_steps(monkeypatch, "natural", kill_at=4)
    with pytest.raises(_Killed):
        train_classifier(cfg, tmp_path / "r", progress=False)
    monkeypatch.undo()
    calls = _count_steps(monkeypatch, "natural")
    train_classifier(dataclasses.replace(cfg, checkpoint_every=5, checkpoint_every_s=60.0),
                     tmp_path / "r", progress=False)
    assert len(calls) == 2 * BATCHES - 2
    assert result_config(cfg) == result_config(dataclasses.replace(cfg, checkpoint_every=7))


# --------------------------------------------------------------------------- SIGTERM
TERMINATED = textwrap.dedent("""
    import os, signal, sys, time
    sys.path.insert(0, {src!r})
    from interpretgan import cli
    from interpretgan.runs import RunLock
    def busy(a):
        with RunLock({root!r}):
            os.kill(os.getpid(), signal.SIGTERM)  # what SLURM or Kubernetes sends
            time.sleep(30)
    cli.cmd_models = busy
    sys.exit(cli.main(["models"]))
""")


def test_sigterm_is_one_line_status_143_and_releases_the_lock(tmp_path):
    root = tmp_path / "run"
    r = subprocess.run([sys.executable, "-c", TERMINATED.format(src=SRC, root=str(root))],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 143
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "terminated (SIGTERM)" in lines[0] and "resume" in lines[0]
    assert root.is_dir() and not (root / ".lock").exists()


def test_sigterm_during_training_resumes_to_the_same_model(mnist_small, shared_cache, tmp_path):
    """A real ``interpretgan train`` process gets SIGTERM inside its first epoch; the same
    command finishes it, equal to an uninterrupted run."""
    env = {**os.environ, "PYTHONPATH": SRC, "INTERPRETGAN_CACHE": str(shared_cache),
           "INTERPRETGAN_OFFLINE": "1"}

    def train(run: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "interpretgan", "-q", "train",
                                 "--run-dir", str(run), "--device", "cpu", "--epochs", "1",
                                 "--train-subset", "960", "--test-subset", "32", "--batch-size",
                                 "16", "--checkpoint-every", "1"],
                                env=env, stderr=subprocess.PIPE, text=True)

    run = tmp_path / "r"
    p = train(run)
    while not (run / "checkpoints" / "last.pt").exists():  # the first resume point
        assert p.poll() is None, p.stderr.read()
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err
    assert "terminated (SIGTERM)" in err and "Traceback" not in err
    assert not (run / ".lock").exists()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["within_epoch"]["batch"] >= 1
    assert train(run).wait(timeout=300) == 0
    assert train(tmp_path / "reference").wait(timeout=300) == 0
    _same_training(tmp_path / "reference", run)


# --------------------------------------------------------------------------- several ranks
def _rank_killed(cfg: dict, run: str, kill_at: int) -> None:
    """One rank of a data-parallel training that stops (as if killed) before step ``kill_at``."""
    from interpretgan import distributed
    from interpretgan.config import from_dict

    m = training.TRAIN_METHODS.get(cfg["method"])
    real, calls = m.step, []

    def step(*a, **kw):
        calls.append(1)
        if len(calls) == kill_at:
            os._exit(0)  # no cleanup, like a kill (its peer stops at the same step)
        return real(*a, **kw)

    m.step = step
    with distributed.process_group("cpu") as world:
        train_classifier(from_dict(TrainConfig, cfg), run, progress=False, world=world)


def test_ranks_killed_inside_an_epoch_resume_from_their_shards_on_one_rank(
        mnist_small, shared_cache, tmp_path, monkeypatch):
    """2 ranks save resume points inside an epoch (each its half of the ATTA store, the epoch's
    totals over both); killed in epoch 2, the training finishes on 1 rank as 1 rank trains it."""
    from test_distributed import TRAIN_TOL, _run, _same_model, _train_cfg

    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    cfg = dataclasses.replace(_train_cfg(shared_cache, "atta-trades", epochs=2), checkpoint_every=2,
                              checkpoint_every_s=0.0)
    train_classifier(cfg, tmp_path / "one", progress=False)
    call = (f"import test_resume_points as r; r._rank_killed({dataclasses.asdict(cfg)!r}, "
            f"{str(tmp_path / 'two')!r}, kill_at=10)")  # 6 batches per epoch: epoch 2, batch 4
    _run(2, call)
    ck = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")
    assert (ck["epoch"], ck["within_epoch"]["batch"]) == (1, 2)
    shards = sorted(p.name for p in (tmp_path / "two" / "checkpoints" / "shards").iterdir())
    assert shards == ["epoch1-batch2-rank0-of-2.pt", "epoch1-batch2-rank1-of-2.pt",
                      "epoch1-rank0-of-2.pt", "epoch1-rank1-of-2.pt"]  # (the point before stays)
    train_classifier(cfg, tmp_path / "two", progress=False)
    _same_model(tmp_path / "one", tmp_path / "two", TRAIN_TOL)
    rows = [read_jsonl(tmp_path / d / "metrics.jsonl")[-1] for d in ("one", "two")]
    assert rows[1]["train_loss"] == pytest.approx(rows[0]["train_loss"], rel=1e-5)
