"""The main job's cache serves only what its stages wrote: a manifest per stage (checked by
size and mtime, by content with ``--verify-outputs``), a lock that covers the folders inside a
run, commands refused inside a run's folders, ``config.json`` only for finished runs."""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from interpretgan.cli import main
from interpretgan.config import resolve_run
from interpretgan.pipeline import Stages, run_main
from interpretgan.runs import NonFiniteError, RunLock, RunLockedError, read_json, write_json

from test_pipeline import tiny, tiny_cli
from test_run_faults import _digests, finished  # noqa: F401 (a fixture)

HOLDER = """
import sys, time
from interpretgan.runs import RunLock
with RunLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""




@pytest.fixture
def run(finished, tmp_path, monkeypatch, shared_cache) -> Path:
    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    dest = tmp_path / "run"
    shutil.copytree(finished, dest)  # (mtimes kept)
    return dest


@pytest.fixture
def holder():
    """``holder(folder)``: another process holding ``folder``'s lock until the test ends."""
    procs = []

    def hold(folder: Path) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE,
                             text=True)
        procs.append(p)
        assert p.stdout.readline().strip() == "held"
        return p

    yield hold
    for p in procs:
        p.kill()
        p.wait()


@pytest.fixture(autouse=True)
def _info(caplog):
    caplog.set_level(logging.INFO)


def _ran(caplog) -> set[str]:
    return {r.getMessage().split()[1].rstrip(":") for r in caplog.records
            if r.getMessage().startswith("stage ") and r.getMessage().endswith(": running")}


# --------------------------------------------------------------------------- the manifest
def test_a_stage_over_outputs_it_did_not_write_is_redone_with_its_downstream(tmp_path, caplog):
    st = Stages(tmp_path)
    out, down = tmp_path / "a.txt", tmp_path / "b.txt"
    calls = []

    def stage_a():
        calls.append("a")
        out.write_text("mine")

    def pipeline():
        key = st.run("a", {"v": 1}, [out], stage_a)
        st.run("b", {"a": key}, [down], lambda: calls.append("b") or down.write_text("b"))

    pipeline()
    assert read_json(tmp_path / "stages" / "a.json")["outputs"]["a.txt"][0] == 4
    pipeline()
    assert calls == ["a", "b"]  # cached while the files are the ones written
    out.write_text("someone else's")
    pipeline()
    assert calls == ["a", "b", "a", "b"] and out.read_text() == "mine"
    assert "stage a: a.txt has changed (size 14, recorded 4) since it ran; redoing it" in caplog.text
    (tmp_path / "extra").mkdir()
    pipeline()  # files beside the outputs are no stage's
    assert calls == ["a", "b", "a", "b"]


def test_a_failed_change_puts_back_the_manifest_with_the_outputs(tmp_path):
    st = Stages(tmp_path)
    out = tmp_path / "fit"

    def work():
        out.mkdir()
        (out / "g.pt").write_text("one")

    st.run("fit:natural", {"v": 1}, [out / "g.pt"], work, clean=[out])
    before = read_json(tmp_path / "stages" / "fit__natural.json")
    with pytest.raises(ValueError):
        st.run("fit:natural", {"v": 2}, [out / "g.pt"], lambda: int("x"), clean=[out])
    assert read_json(tmp_path / "stages" / "fit__natural.json") == before
    (out / "g.pt").write_text("two")  # same size, new mtime: hashed, found changed
    calls = []
    st.run("fit:natural", {"v": 1}, [out / "g.pt"], lambda: calls.append(1) or work(), clean=[out])
    assert calls == [1] and (out / "g.pt").read_text() == "one"


def test_the_readmes_fit_aimed_at_a_runs_classifier_is_refused(run, caplog):
    ckpt = run / "natural" / "checkpoints" / "final.pt"
    before = _digests(run)
    assert main(["-q", "fit", "--checkpoint", str(ckpt), "--device", "cpu"]) == 2
    assert f"inside the run folder {run.resolve()}" in caplog.text and "--run-dir" in caplog.text
    assert _digests(run) == before


def test_a_foreign_fit_in_a_finished_run_is_redone(run, tmp_path, caplog):
    from interpretgan.fitting import fit_run

    ckpt = run / "natural" / "checkpoints" / "final.pt"
    # another fit of the same classifier (another seed) put in the run's place behind its back
    cfg = resolve_run(tiny()).fit
    fit_run(ckpt, tmp_path / "elsewhere", dataclasses.replace(cfg, seed=cfg.seed + 1),
            list(tiny().layers), progress=False, device="cpu", dstar_images=tiny().dstar_images)
    shutil.rmtree(run / "natural" / "fit")
    shutil.copytree(tmp_path / "elsewhere" / "fit", run / "natural" / "fit")
    foreign = read_json(run / "natural" / "fit" / "summary.json")
    caplog.clear()
    res = run_main(tiny(), run, progress=False, device="cpu")
    assert "stage fit:natural: natural/fit/" in caplog.text and "redoing it" in caplog.text
    assert {"fit:natural", "diagnose:natural", "explain:natural"} <= _ran(caplog)
    assert "train:natural" not in _ran(caplog) and "fit:adversarially_trained" not in _ran(caplog)
    assert res["natural"]["generators"]["layers"] != foreign["layers"]
    assert "checkpoint" not in read_json(run / "natural" / "fit" / "summary.json")


def test_verify_outputs_catches_a_same_size_change(run, caplog):
    diag = run / "natural" / "diagnosis.json"
    good = diag.read_bytes()
    st = diag.stat()
    forged = good.replace(b'"n": 40', b'"n": 41')
    assert forged != good and len(forged) == len(good)
    diag.write_bytes(forged)
    os.utime(diag, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime
    assert main(tiny_cli(run, "cpu")) == 0
    assert _ran(caplog) == set() and diag.read_bytes() == forged  # the cheap check trusts it
    caplog.clear()
    assert main(tiny_cli(run, "cpu") + ["--verify-outputs"]) == 0
    assert "natural/diagnosis.json has changed (content differs" in caplog.text
    assert _ran(caplog) == {"diagnose:natural"} and diag.read_bytes() == good


def test_run_folders_from_before_the_manifest_resume_without_redoing(run, caplog):
    for rec in (run / "stages").glob("*.json"):
        doc = read_json(rec)
        doc.pop("outputs")
        write_json(rec, doc)  # the record as older versions wrote it
    run_main(tiny(), run, progress=False, device="cpu")
    assert _ran(caplog) == set()
    assert all("outputs" in read_json(rec) for rec in (run / "stages").glob("*.json"))


# --------------------------------------------------------------------------- locks, folders
def test_commands_aimed_inside_a_busy_run_are_refused(run, tmp_path, holder, caplog):
    nat = run / "natural"
    before = _digests(run)
    p = holder(run)
    commands = [
        ["train", "--run-dir", str(nat), "--epochs", "1", "--train-subset", "64", "--test-subset", "32"],
        ["fit", "--checkpoint", str(nat / "checkpoints" / "final.pt")],
        ["explain", "--run", str(nat)],
        ["evaluate", "--checkpoint", str(nat / "checkpoints" / "final.pt"), "--subset", "8"],
    ]
    for cmd in commands:
        caplog.clear()
        assert main(["-q", cmd[0], "--device", "cpu", *cmd[1:]]) == 2, cmd
        assert f"run folder {run.resolve()} is in use by PID {p.pid}" in caplog.text, cmd
    assert _digests(run) == before


def test_train_into_a_finished_run_is_refused_naming_run_dir(run, caplog):
    before = _digests(run)
    assert main(["-q", "train", "--device", "cpu", "--run-dir", str(run / "natural"), "--epochs", "1",
                 "--train-subset", "64", "--test-subset", "32"]) == 2
    assert f"inside the run folder {run.resolve()}" in caplog.text and "--run-dir" in caplog.text
    assert _digests(run) == before


def test_a_lock_covers_the_folders_inside_and_around_it(tmp_path, holder):
    outer, inner = tmp_path / "run", tmp_path / "run" / "natural" / "fit"
    inner.mkdir(parents=True)
    p = holder(outer)
    with pytest.raises(RunLockedError, match=f"in use by PID {p.pid}"):
        with RunLock(inner):
            pass
    assert not (inner / ".lock").exists()  # refused: nothing left behind
    from interpretgan.runs import check_free  # the same check, before any work

    with pytest.raises(RunLockedError, match=f"in use by PID {p.pid}"):
        check_free(inner)
    other = tmp_path / "other"
    q = holder(other / "natural")
    with pytest.raises(RunLockedError, match=f"in use by PID {q.pid}"):
        with RunLock(other):  # a run folder with a command working inside it
            pass
    with RunLock(tmp_path / "free"):  # this process's own nested locks are no conflict
        with RunLock(tmp_path / "free" / "natural"):
            check_free(tmp_path / "free" / "natural" / "fit")


# --------------------------------------------------------------------------- config.json
def test_a_failed_change_leaves_config_json_byte_for_byte(run, monkeypatch):
    from interpretgan.run import pipeline

    config, results = (run / "config.json").read_bytes(), (run / "results.json").read_bytes()

    def nan(*a, **k):
        raise NonFiniteError("forced: the diagnosis is not finite")

    monkeypatch.setattr(pipeline, "diagnose_model", nan)
    with pytest.raises(NonFiniteError, match="stage diagnose:natural"):
        run_main(dataclasses.replace(tiny(), seed=7), run, progress=False, device="cpu")
    assert (run / "config.json").read_bytes() == config
    assert (run / "results.json").read_bytes() == results
