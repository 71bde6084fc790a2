"""Device choice: "auto" takes a GPU only when there is one; bad names fail clearly."""
from __future__ import annotations

import pytest
import torch

from interpretgan.data import ImageDataset, batches
from interpretgan.devices import module_device, resolve_device


def test_auto_follows_cuda_availability(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") == resolve_device(None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match="only 1 GPU"):
        resolve_device("cuda:3")


def test_bad_devices_fail_clearly(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match="not supported"):
        resolve_device("meta")


def test_module_device_and_batches_on_the_cpu():
    assert module_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(torch.nn.ReLU()) == torch.device("cpu")  # no parameters
    ds = ImageDataset(torch.arange(6 * 4, dtype=torch.uint8).view(6, 1, 2, 2), torch.arange(6), "t",
                      [str(i) for i in range(6)])
    plain = list(batches(ds, 4, shuffle=True, seed=3, with_index=True))
    moved = list(batches(ds, 4, shuffle=True, seed=3, with_index=True, device="cpu"))
    assert [len(b[1]) for b in plain] == [4, 2]
    for (i1, x1, y1), (i2, x2, y2) in zip(plain, moved):
        assert torch.equal(i1, i2) and torch.equal(x1, x2) and torch.equal(y1, y2)
        assert torch.equal(x1, ds.images[i1].float() / 255) and torch.equal(y1, ds.labels[i1])


def test_cli_rejects_a_missing_gpu(monkeypatch, tmp_path, caplog):
    from interpretgan.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", "--device", "cuda", "--epochs", "1", "--train-subset", "8",
                 "--run-dir", str(tmp_path / "r")]) == 2
    assert "no CUDA GPU" in caplog.text


def _one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.parametrize("command", ["run", "fit", "explain", "train"])
@pytest.mark.parametrize("device, gpus, message", [
    ("cuda", 0, "device 'cuda' asked for, but this machine has no CUDA GPU (or torch is a CPU build); "
                "devices here: cpu"),
    ("cuda:7", 1, "device 'cuda:7' asked for, but there is only 1 GPU(s) here; devices here: cpu, cuda:0"),
    ("gpu", 0, "unknown device 'gpu'; use auto, cpu, cuda or cuda:N; devices here: cpu"),
])
def test_every_compute_command_rejects_a_device_that_is_not_here(
        command, device, gpus, message, monkeypatch, tmp_path, caplog, capsys):
    """One line naming the devices that exist, exit status 2, no traceback, nothing written."""
    from interpretgan.cli import main

    if gpus:
        _one_gpu(monkeypatch)
    else:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out"
    args = {"run": ["run", "--run-dir", str(out)],
            "fit": ["fit", "--checkpoint", str(tmp_path / "c.pt"), "--run-dir", str(out)],
            "explain": ["explain", "--run", str(out)],
            "train": ["train", "--epochs", "1", "--train-subset", "8", "--run-dir", str(out)]}[command]
    assert main(["-q", *args, "--device", device]) == 2
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in errors] == [message]
    assert all(r.exc_info is None for r in errors)
    assert "Traceback" not in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
