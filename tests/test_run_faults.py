"""The main job's run folder under faults and bad input: a failed change never costs finished
work, stale caches are impossible, a NaN model stops with one line, one process per folder."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from interpretgan.cli import main
from interpretgan.pipeline import Stages, rebuild_report, run_main
from interpretgan.runs import read_json

from test_pipeline import USER_MODEL, tiny, tiny_cli


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, mnist_small, shared_cache):
    """One finished tiny run folder, copied by each test that changes it."""
    os.environ["INTERPRETGAN_CACHE"] = str(shared_cache)
    root = tmp_path_factory.mktemp("finished") / "run"
    run_main(tiny(), root, progress=False, device="cpu")
    return root


def _copy(finished: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(finished, dest)
    return dest


# --------------------------------------------------------------------------- the typo drill
def test_a_typo_in_the_layers_changes_nothing(finished, tmp_path, monkeypatch, shared_cache, caplog):
    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    root = _copy(finished, tmp_path)
    before = _digests(root)
    args = tiny_cli(root, "cpu")
    i = args.index("--layers")
    args[i + 1] = "feature_extractor.nope"
    assert main(args) == 2
    assert "no layer 'feature_extractor.nope'" in caplog.text
    assert _digests(root) == before  # generators, config.json, results: untouched
    args[i + 1] = ""  # an empty list is an error too, not "the default layers"
    assert main(args) == 2 and _digests(root) == before


def test_a_missing_checkpoint_changes_nothing_and_the_report_still_rebuilds(finished, tmp_path, caplog):
    root = _copy(finished, tmp_path)
    model = tmp_path / "m.py"
    model.write_text(USER_MODEL)
    before = _digests(root)
    assert main(["-q", "run", "--run-dir", str(root), "--model-file", f"{model}:build"]) == 2
    assert "--checkpoint" in caplog.text
    assert _digests(root) == before
    assert main(["report", "run", "--dir", str(root)]) == 0


def test_a_changed_stage_that_fails_puts_the_finished_outputs_back(tmp_path):
    st = Stages(tmp_path)
    out = tmp_path / "fit"

    def work(tag):
        def fn():
            out.mkdir(exist_ok=True)
            (out / "g.pt").write_text(tag)
        return fn

    st.run("fit:natural", {"v": 1}, [out / "g.pt"], work("one"), clean=[out])

    def broken():
        out.mkdir()
        (out / "partial").write_text("half")
        raise ValueError("bad layer")

    with pytest.raises(ValueError):
        st.run("fit:natural", {"v": 2}, [out / "g.pt"], broken, clean=[out])
    assert (out / "g.pt").read_text() == "one" and not (out / "partial").exists()
    calls = []
    st.run("fit:natural", {"v": 1}, [out / "g.pt"], lambda: calls.append(1), clean=[out])
    assert calls == []  # still the finished stage: cached


KILLER = """
import os, signal, sys
from pathlib import Path
from interpretgan.pipeline import Stages
root = Path(sys.argv[1]); out = root / "fit"
def fn():
    out.mkdir()
    (out / "partial").write_text("half")
    os.kill(os.getpid(), signal.SIGKILL)
Stages(root).run("fit:natural", {"v": 2}, [out / "g.pt"], fn, clean=[out])
"""


@pytest.mark.parametrize("rerun_with", ["old inputs", "new inputs"])
def test_a_kill_during_a_changed_stage(tmp_path, rerun_with):
    """SIGKILL while a stage is redone: with the old inputs the finished outputs come back,
    with the new ones the stage is redone and the old outputs go."""
    st = Stages(tmp_path)
    out = tmp_path / "fit"
    out.mkdir()
    (out / "g.pt").write_text("one")
    st.run("fit:natural", {"v": 1}, [out / "g.pt"], lambda: None, clean=[out])
    r = subprocess.run([sys.executable, "-c", KILLER, str(tmp_path)], capture_output=True)
    assert r.returncode == -9 and (out / "partial").exists()
    calls = []

    def fn():
        calls.append(1)
        out.mkdir(exist_ok=True)
        (out / "g.pt").write_text("two")

    st = Stages(tmp_path)
    st.run("fit:natural", {"v": 1 if rerun_with == "old inputs" else 2}, [out / "g.pt"], fn, clean=[out])
    assert (out / "g.pt").read_text() == ("one" if rerun_with == "old inputs" else "two")
    assert calls == ([] if rerun_with == "old inputs" else [1])
    # with the new inputs the stage resumed into its partial outputs (as after any kill)
    assert (out / "partial").exists() == (rerun_with == "new inputs")
    assert not list(tmp_path.glob(".*.replaced"))


def test_a_kill_between_planning_and_moving_the_old_outputs(tmp_path):
    """The record names the outputs to move aside, the move never happened: the old command
    finds its outputs; the new one moves them and runs."""
    from interpretgan.pipeline import _aside
    from interpretgan.runs import write_json

    st = Stages(tmp_path)
    out = tmp_path / "fit"
    out.mkdir()
    (out / "g.pt").write_text("one")
    st.run("fit:natural", {"v": 1}, [out / "g.pt"], lambda: None, clean=[out])
    old_key = st.key("fit:natural")
    plan = {"key": "other", "done": False, "seconds": 0.0, "aside": [str(_aside(out))],
            "aside_key": old_key, "aside_seconds": 0.0}
    write_json(tmp_path / "stages" / "fit__natural.json", plan)  # killed right after the plan
    calls = []
    st.run("fit:natural", {"v": 1}, [out / "g.pt"], lambda: calls.append(1), clean=[out])
    assert calls == [] and (out / "g.pt").read_text() == "one"


# --------------------------------------------------------------------------- full disk, damaged records
def test_a_full_disk_inside_torch_save_while_a_changed_stage_is_redone(finished, tmp_path, monkeypatch,
                                                                       shared_cache, caplog):
    """The disk fills while a changed fit saves its first checkpoint: one line naming the
    file and what to do, status 2, the finished stage's outputs back in place."""
    import errno

    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    root = _copy(finished, tmp_path)
    before = _digests(root)

    def full_disk(obj, f, *a, **kw):  # what torch.save raises when a write fails: ENOSPC inside
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", full_disk)
    assert main([*tiny_cli(root, "cpu"), "--set", "fit.lr=0.0003"]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "Traceback" not in caplog.text
    assert "No space left on device" in errors[0] and "free some space" in errors[0]
    assert str(root / "natural" / "fit") in errors[0]  # the file being written
    after = _digests(root)
    assert {k: v for k, v in after.items() if k != "config.json"} == \
        {k: v for k, v in before.items() if k != "config.json"}


@pytest.mark.parametrize("name,content", [
    ("wall_time.json", ""), ("stages/fit__natural.json", '{"key": 3}'), ("stages/dstar__natural.json", "[1, 2")])
def test_a_damaged_record_is_named_with_its_fix(finished, tmp_path, shared_cache, monkeypatch, caplog,
                                                name, content):
    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    root = _copy(finished, tmp_path)
    (root / name).write_text(content)
    before = _digests(root)
    for args in (tiny_cli(root, "cpu"), ["report", "run", "--dir", str(root)]):
        caplog.clear()
        assert main(args) == 2
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and "Traceback" not in caplog.text
        assert str(root / name) in errors[0] and "delete it and rerun the same command" in errors[0]
        assert {k: v for k, v in _digests(root).items() if k != "config.json"} == \
            {k: v for k, v in before.items() if k != "config.json"}
    (root / name).unlink()  # the fix the line names
    assert main(tiny_cli(root, "cpu")) == 0


# --------------------------------------------------------------------------- stale caches, NaN
NAN_MODEL = USER_MODEL.replace("return self.head(self.pool(self.body(x)).flatten(1))",
                               "return self.head(self.pool(self.body(x)).flatten(1)) * float('nan')")


def test_an_edited_model_file_is_not_served_from_the_cache_and_a_nan_model_stops(
        tmp_path, mnist_small, shared_cache, monkeypatch, caplog):
    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    model = tmp_path / "m.py"
    model.write_text(USER_MODEL)
    ns: dict = {}
    exec(compile(USER_MODEL, "m", "exec"), ns)
    torch.manual_seed(0)
    torch.save(ns["build"]().state_dict(), tmp_path / "m.pt")
    root = tmp_path / "run"
    cfg = dataclasses.replace(tiny(), layers=("body.1", "head"))
    run_main(cfg, root, model_file=f"{model}:build", checkpoint=str(tmp_path / "m.pt"),
             progress=False, device="cpu")
    results = (root / "results.json").read_bytes()
    model.write_text(NAN_MODEL)  # same weights, a model that outputs NaN
    args = ["-q", "run", "--device", "cpu", "--run-dir", str(root), "--model-file", f"{model}:build",
            "--checkpoint", str(tmp_path / "m.pt"), "--layers", "body.1,head",
            "--dstar-images", "40", "--set", "attack=pgd-2", "--set", "explain_images=2",
            *(a for k, v in cfg.fit_overrides.items() for a in ("--set", f"fit.{k}={_json(v)}"))]
    assert main(args) == 2
    err = caplog.text
    assert "stage dstar:user" in err and "not all finite" in err and "Traceback" not in err
    assert (root / "results.json").read_bytes() == results  # the old, finite results stay
    assert read_json(root / "stages" / "train__user.json")["done"]  # redone: not "cached"


def _json(v) -> str:
    import json

    return json.dumps(list(v) if isinstance(v, tuple) else v)


# --------------------------------------------------------------------------- lock, sweep, time
HOLDER = """
import sys, time
from interpretgan.runs import RunLock
with RunLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_run_into_a_busy_folder_is_refused(finished, tmp_path, caplog):
    root = _copy(finished, tmp_path)
    before = _digests(root)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(tiny_cli(root, "cpu")) == 2
        assert f"in use by PID {holder.pid}" in caplog.text
        assert _digests(root) == before
    finally:
        holder.kill()
        holder.wait()


def test_stale_temp_files_are_swept_and_wall_time_adds_up_over_invocations(finished, tmp_path):
    root = _copy(finished, tmp_path)
    stale = root / "natural" / "checkpoints" / ".last.pt.abcd1234.tmp"
    stale.write_bytes(b"\0" * 1024)
    first = read_json(root / "wall_time.json")["seconds"]
    res = run_main(tiny(), root, progress=False, device="cpu")  # every stage cached
    assert not stale.exists()
    assert res["wall_time_s"] > first == pytest.approx(read_json(finished / "results.json")["wall_time_s"])
    assert rebuild_report(root)["wall_time_s"] == pytest.approx(res["wall_time_s"])


def test_code_version_is_part_of_a_stage_key(tmp_path, monkeypatch):
    from interpretgan import pipeline

    st = Stages(tmp_path)
    out = tmp_path / "o"
    calls = []

    def fn():
        calls.append(1)
        out.write_text("x")

    st.run("fit:natural", {"v": 1}, [out], fn)
    monkeypatch.setitem(pipeline.STAGE_VERSIONS, "fit", pipeline.STAGE_VERSIONS["fit"] + 1)
    st.run("fit:natural", {"v": 1}, [out], fn)
    assert calls == [1, 1]

