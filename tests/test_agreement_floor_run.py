"""The agreement floor end to end: a user's grey 28-px CNN with BatchNorm on Fashion-MNIST-format
files through ``interpretgan run``, with a floor out of reach: the layers fit on to the cap and
come out marked unreliable in summary.json, results.json and the report."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from conftest import gzip_folder, idx_bytes, sha
from interpretgan import data
from interpretgan.cli import main
from interpretgan.data import FileSet
from interpretgan.runs import load_checkpoint, read_json, read_jsonl
from test_pipeline import tiny_cli

FASHION_CNN = '''
import torch.nn as nn

class FashionCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()
        self.pool = nn.MaxPool2d(4)
        self.fc1, self.bn2, self.relu2 = nn.Linear(4 * 7 * 7, 16), nn.BatchNorm1d(16), nn.ReLU()
        self.fc2 = nn.Linear(16, 10)

    def forward(self, x):
        x = self.pool(self.relu1(self.bn1(self.conv1(x))))
        return self.fc2(self.relu2(self.bn2(self.fc1(x.flatten(1)))))

def build():
    return FashionCNN()
'''


def _images(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Class k: a bright horizontal bar at rows 2k+3 … 2k+5 over noise. (n, 28, 28), (n,)."""
    labels = np.arange(n) % 10
    x = rng.integers(0, 60, (n, 28, 28))
    for i, k in enumerate(labels):
        x[i, 2 * k + 3: 2 * k + 6, 4:24] = 255
    return x, labels


def _fashion_files(tmp_path, monkeypatch) -> None:
    """Fashion-MNIST-format files (256 train, 160 test images) in a system folder."""
    rng = np.random.default_rng(0)
    (tx, ty), (vx, vy) = _images(256, rng), _images(160, rng)
    raw = tmp_path / "raw"
    raw.mkdir()
    hashes = {}
    for name, arr in {"train-images-idx3-ubyte": tx, "train-labels-idx1-ubyte": ty,
                      "t10k-images-idx3-ubyte": vx, "t10k-labels-idx1-ubyte": vy}.items():
        b = idx_bytes(arr)
        (raw / name).write_bytes(b)
        hashes[name] = sha(b)
    sysdir = gzip_folder(raw, tmp_path / "usr-share")
    monkeypatch.setattr(data.sources, "FASHION_FILES", FileSet(name="fashion-mnist", files=hashes,
                                                       system_dirs=(str(sysdir),)))


def _trained_model(tmp_path):
    """The user's model file and a checkpoint trained on the training files."""
    src = tmp_path / "fashion_cnn.py"
    src.write_text(FASHION_CNN)
    ns: dict = {}
    exec(compile(FASHION_CNN, str(src), "exec"), ns)
    torch.manual_seed(0)
    net = ns["build"]()
    train = data.load_fashion_mnist("train", size=28)
    x, y = train.images.float() / 255, train.labels
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    ckpt = tmp_path / "fashion_cnn.pt"
    torch.save(net.state_dict(), ckpt)
    return src, ckpt


def test_a_layer_below_the_floor_fits_to_the_cap_and_is_marked_unreliable(tmp_path, cache, monkeypatch):
    _fashion_files(tmp_path, monkeypatch)
    src, ckpt = _trained_model(tmp_path)
    root = tmp_path / "run"
    layers = ["relu1", "fc2"]
    assert main([*tiny_cli(root, "cpu"), "--layers", ",".join(layers), "--dataset", "fashion-mnist",
                 "--model-file", f"{src}:build", "--checkpoint", str(ckpt),
                 "--set", "fit.min_agreement=1.0", "--set", "fit.max_extra_fraction=0.5"]) == 0
    summary = read_json(root / "user" / "fit" / "summary.json")
    assert summary["agreement_floor"] == 1.0 and summary["max_extra_steps"] == 3  # half of 6 steps
    for n in layers:
        row = summary["layers"][n]
        assert row["reliable"] == (row["agreement"] >= 1.0) == summary["reliable"][n]
        last = load_checkpoint(root / "user" / "fit" / n / "last.pt")
        if not row["reliable"]:  # it fitted on to the cap, judged after every round
            assert row["extra_steps"] == 3 and last["step"] == 9 and last["floor"]["measured_at"] == 9
    assert not all(summary["reliable"].values())
    assert read_jsonl(root / "user" / "fit" / "metrics.jsonl")[-1]["step"] == 9
    res = read_json(root / "results.json")
    assert res["user"]["agreement_floor"] == 1.0
    for n in layers:
        assert res["user"]["per_layer"][n]["reliable"] == summary["reliable"][n]
    html = (root / "report" / "index.html").read_text()
    assert "Unreliable Acc<sub>i</sub>" in html and "fit.min_agreement" in html
    assert html.count("title='generators below the agreement floor'") == sum(
        not v for v in summary["reliable"].values())
