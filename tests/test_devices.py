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
