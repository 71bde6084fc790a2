"""Model files and checkpoints: a checkpoint never chooses the code that runs, a model file
cannot end the process, each file is imported once, safetensors files load as state_dicts."""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest
import torch

from interpretgan import models
from interpretgan.cli import main
from interpretgan.config import DataConfig
from interpretgan.loading import ModelFileError, load_any, model_file_record
from interpretgan.runs import load_checkpoint, save_checkpoint

# A model file that leaves a marker behind the moment it is imported: what a hostile
# checkpoint could make the tool run if it chose the code.
EVIL = '''
from pathlib import Path
Path({marker!r}).write_text("ran")
import torch.nn as nn

def build():
    return nn.Linear(2, 2)
'''

TINY = '''
import torch.nn as nn

def build():
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
'''


def _one_error(caplog, rc: int, *needles: str) -> str:
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert rc == 2 and len(errors) == 1 and "\n" not in errors[0], (rc, errors)
    assert "Traceback" not in caplog.text
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def evil_run(tmp_path, monkeypatch):
    """A run folder whose ``final.pt`` (loadable with weights_only) names ``evil.py``,
    relative to the current folder, which holds that file."""
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "MARKER"
    Path("evil.py").write_text(EVIL.format(marker=str(marker)))
    run = tmp_path / "victim"
    ck = save_checkpoint(run / "checkpoints" / "final.pt", {
        "model_file": "evil.py:build", "state_dict": {"weight": torch.zeros(2, 2), "bias": torch.zeros(2)},
        "normalize": None, "config": {"data": dataclasses.asdict(DataConfig())}})
    (run / "fit").mkdir()
    return run, ck, marker


@pytest.mark.parametrize("command", ["explain", "fit", "evaluate", "layers", "run-judge"])
def test_a_checkpoint_naming_a_model_file_runs_no_code(evil_run, command, tmp_path, caplog, cache):
    run, ck, marker = evil_run
    argv, flag = {
        "explain": (["explain", "--run", str(run)], "--model-file"),
        "fit": (["fit", "--checkpoint", str(ck), "--run-dir", str(tmp_path / "f")], "--model-file"),
        "evaluate": (["evaluate", "--checkpoint", str(ck), "--out", str(tmp_path / "e")], "--model-file"),
        "layers": (["layers", "--checkpoint", str(ck)], "--model-file"),
        # a natural classifier trained alone, judged by that checkpoint: refused before training
        "run-judge": (["run", "--judge", str(ck), "--set", "adversarial=null",
                       "--run-dir", str(tmp_path / "r")], "--judge-model-file"),
    }[command]
    msg = _one_error(caplog, main(argv), str(ck), "evil.py:build", f"pass {flag} FILE.py:FUNCTION")
    assert "never chooses the code" in msg
    assert not marker.exists()
    assert not (tmp_path / "f").exists() and not (tmp_path / "e").exists() and not (tmp_path / "r").exists()


def test_the_typed_file_is_checked_against_the_recorded_hash(tmp_path, caplog, monkeypatch):
    src = tmp_path / "tiny.py"
    src.write_text(TINY)
    spec = f"{src}:build"
    net = load_any_file(spec)
    ck = save_checkpoint(tmp_path / "final.pt", {**model_file_record(spec), "state_dict": net.state_dict(),
                                                 "normalize": [0.5, 0.25]})
    assert load_checkpoint(ck)["model_file_sha256"] and load_checkpoint(ck)["model_file"] == f"{src.resolve()}:build"
    back = load_any(ck, model_file=spec)  # the typed file, the recorded content
    x = torch.rand(2, 1, 2, 2)
    assert torch.allclose(back(x), net((x - 0.5) / 0.25))
    src.write_text(TINY + "\n# edited\n")  # same weights, other code
    with pytest.raises(ModelFileError, match="is not the file .* was saved from"):
        load_any(ck, model_file=spec)
    _one_error(caplog, main(["evaluate", "--checkpoint", str(ck), "--model-file", spec]),
               "sha256", "rerun the command that saved")


def load_any_file(spec: str) -> torch.nn.Module:
    from interpretgan.loading import load_model_file

    torch.manual_seed(0)
    return load_model_file(spec).eval()


# --------------------------------------------------------------------------- leaving the process
LEAVERS = {
    "exit0-in-build": ("import sys, torch.nn as nn\ndef build():\n    sys.exit(0)\n",
                       ["sys.exit(0)", "build() built the model"]),
    "exit3-at-import": ("import sys\nsys.exit(3)\ndef build():\n    pass\n",
                        ["sys.exit(3)", "it was imported"]),
    "argparse-at-import": ("import argparse\np = argparse.ArgumentParser(prog='train_mine')\n"
                           "p.add_argument('--data', required=True)\nargs = p.parse_args()\n"
                           "def build():\n    pass\n",
                           ["sys.exit(2)", "it was imported", "the following arguments are required: --data"]),
}


@pytest.mark.parametrize("kind", list(LEAVERS))
def test_a_model_file_that_exits_is_one_line(kind, tmp_path, caplog, capsys, cache):
    code, needles = LEAVERS[kind]
    src = tmp_path / f"{kind}.py"
    src.write_text(code)
    sd = tmp_path / "sd.pt"
    torch.save({"w": torch.zeros(1)}, sd)
    rc = main(["run", "--model-file", f"{src}:build", "--checkpoint", str(sd),
               "--run-dir", str(tmp_path / "run")])
    _one_error(caplog, rc, str(src), *needles, 'if __name__ == "__main__"')
    out = capsys.readouterr()
    assert "usage:" not in out.err + out.out  # no other program's usage text
    assert not (tmp_path / "run").exists()


def test_ctrl_c_in_a_model_file_stays_ctrl_c(tmp_path, caplog):
    src = tmp_path / "slow.py"
    src.write_text("raise KeyboardInterrupt\n")
    sd = tmp_path / "sd.pt"
    torch.save({"w": torch.zeros(1)}, sd)
    assert main(["run", "--model-file", f"{src}:build", "--checkpoint", str(sd),
                 "--run-dir", str(tmp_path / "run")]) == 130


def test_a_model_file_is_imported_once_per_content(tmp_path, capsys):
    from interpretgan.pipeline import load_model_file

    count = tmp_path / "imports.txt"
    src = tmp_path / "counted.py"
    code = (f"from pathlib import Path\np = Path({str(count)!r})\n"
            "p.write_text(p.read_text() + 'x' if p.exists() else 'x')\nprint('imported')\n" + TINY)
    src.write_text(code)
    a, b = load_model_file(f"{src}:build"), load_model_file(f"{src}:build")
    assert a is not b and count.read_text() == "x"  # two models, one import
    assert capsys.readouterr().out == "imported\n"  # what the file prints still shows
    src.write_text(code + "\n# edited\n")
    load_model_file(f"{src}:build")
    assert count.read_text() == "xx"  # new content: imported again


# --------------------------------------------------------------------------- safetensors
_ST_DTYPES = {torch.float32: "F32", torch.int64: "I64", torch.float16: "F16"}


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    """The safetensors layout: 8-byte little-endian header size, JSON header, tensor bytes."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        b = t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)  # the format pads its header to 8 bytes
    path.write_bytes(len(h).to_bytes(8, "little") + h + b"".join(blobs))
    return path


def test_a_renamed_safetensors_file_loads_as_a_state_dict(tmp_path, caplog):
    net = models.create("smallcnn", input_size=28)
    state = {**net.state_dict(), "extra.count": torch.tensor([3, 4], dtype=torch.int64),
             "extra.half": torch.rand(2, 3).half(), "extra.empty": torch.zeros(0, 4)}
    path = write_safetensors(tmp_path / "weights.pt", state)  # renamed: detected by its header
    back = load_checkpoint(path)
    assert set(back) == set(state)
    assert all(torch.equal(back[k], v) and back[k].dtype == v.dtype for k, v in state.items())
    write_safetensors(tmp_path / "w.safetensors", net.state_dict())
    loaded = models.load_classifier(tmp_path / "w.safetensors", "smallcnn", input_size=28)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in net.state_dict().items())
    assert main(["layers", "--checkpoint", str(tmp_path / "w.safetensors"), "--model", "smallcnn",
                 "--input-size", "28"]) == 0
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="damaged safetensors file") as e:
        load_checkpoint(damaged)
    assert "\n" not in str(e.value) and "pickle" not in str(e.value)
