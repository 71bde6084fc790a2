"""A user's own model, diagnosed as a new user would: a grey 28-px CNN with BatchNorm trained on
Fashion-MNIST outside interpretgan, then ``interpretgan run --model-file ... --dataset
fashion-mnist`` at the quick preset (agreement floor included).

Writes the model file, trains it (Adam, ``--epochs`` epochs, batch 128, on the full training
split), runs the main job in a fresh run folder and reports, per layer and generator seed, the
held-out agreement (after the scheduled steps and at the end), the extra steps the agreement
floor took and whether the layer is reliable, and the run's cost in natural-epoch units: one
natural epoch is the project's SmallCNN on MNIST (32 px, batch 128, the ``mnist-natural``
preset), trained for one epoch in the same process (the unit of the main job's 40-epoch
budget), measured before the run.

    python benchmarks/own_fashion_cnn.py --out runs/own_fashion --json docs/own_fashion_cnn.json

Fashion-MNIST comes through the usual sources (Debian's ``dataset-fashion-mnist`` package, the
cache, a mirror: ``interpretgan data fashion-mnist``); MNIST (for the unit) likewise.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from interpretgan.loading import load_model_file

MODEL_FILE = '''
import torch.nn as nn


class FashionCNN(nn.Module):
    """Two conv blocks (conv, BatchNorm, ReLU, 2x2 max-pool) and a BatchNorm MLP head, 28 px grey."""

    def __init__(self, classes=10):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1, self.bn3, self.relu3 = nn.Linear(64 * 7 * 7, 128), nn.BatchNorm1d(128), nn.ReLU()
        self.fc2 = nn.Linear(128, classes)

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        return self.fc2(self.relu3(self.bn3(self.fc1(x.flatten(1)))))


def build():
    return FashionCNN()
'''


def train_own_model(out: Path, epochs: int, seed: int) -> dict:
    """The user's side: the model trained on Fashion-MNIST (28 px) and saved as a state_dict."""
    from interpretgan.data import batches, load_fashion_mnist

    (out / "fashion_cnn.py").write_text(MODEL_FILE)
    torch.manual_seed(seed)
    net = load_model_file(f"{out / 'fashion_cnn.py'}:build")
    train, test = load_fashion_mnist("train", size=28), load_fashion_mnist("test", size=28)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    epoch_s = []
    for epoch in range(epochs):
        net.train()
        t0 = time.perf_counter()
        for x, y in batches(train, 128, shuffle=True, seed=seed, epoch=epoch):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
        epoch_s.append(time.perf_counter() - t0)
    net.eval()
    with torch.no_grad():
        hits = sum((net(x).argmax(1) == y).sum().item() for x, y in batches(test, 1000))
    torch.save(net.state_dict(), out / "fashion_cnn.pt")
    return {"epochs": epochs, "epoch_s": epoch_s, "test_accuracy": hits / len(test)}


def natural_epoch_seconds(out: Path) -> float:
    """One epoch of the project's natural SmallCNN on MNIST (the budget's unit), in seconds."""
    from interpretgan.config import TRAIN_PRESETS
    from interpretgan.runs import read_jsonl
    from interpretgan.training import train_classifier

    cfg = dataclasses.replace(TRAIN_PRESETS.get("mnist-natural"), epochs=1, eval_attack=None)
    train_classifier(cfg, out / "unit", progress=False, device="cpu")
    return next(r["train_s"] for r in read_jsonl(out / "unit" / "metrics.jsonl") if "train_s" in r)


def run_job(out: Path, extra: list[str]) -> tuple[dict, float]:
    """``interpretgan run`` on the user's model, in a child process; (results.json, wall s)."""
    cmd = [sys.executable, "-m", "interpretgan", "-q", "run", "--device", "cpu",
           "--model-file", f"{out / 'fashion_cnn.py'}:build", "--checkpoint", str(out / "fashion_cnn.pt"),
           "--dataset", "fashion-mnist", "--run-dir", str(out / "run"), *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=os.environ.copy())
    wall = time.perf_counter() - t0
    return json.loads((out / "run" / "results.json").read_text()), wall


def summarize(results: dict, unit: float, wall: float) -> dict:
    """Agreement per layer and seed, the floor's outcome and the cost in natural-epoch units."""
    user = results["user"]
    gen = user["generators"]
    stages = sum(results["timings_s"].values())
    return {
        "agreement_floor": gen.get("agreement_floor"), "max_extra_steps": gen.get("max_extra_steps"),
        "members": {n: {k: row.get(k) for k in ("agreement", "agreement_scheduled", "extra_steps", "reliable")}
                    for n, row in gen["layers"].items()},
        "reliable": gen.get("reliable"),
        "min_agreement": min(row["agreement"] for row in gen["layers"].values()),
        "clean_accuracy": user["clean_accuracy"], "adversarial_accuracy": user["adversarial_accuracy"],
        "acc_i": {n: p["acc"] for n, p in user["per_layer"].items()},
        "stages_s": results["timings_s"], "stages_total_s": stages, "wall_s": wall,
        "natural_epoch_s": unit, "epoch_units": stages / unit,
        "per_stage_units": {k: v / unit for k, v in results["timings_s"].items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/own_fashion"))
    ap.add_argument("--json", type=Path, default=None, help="also write the summary here")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs of the user's model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], help="passed to interpretgan run")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    own = train_own_model(a.out, a.epochs, a.seed)
    unit = natural_epoch_seconds(a.out)
    results, wall = run_job(a.out, [x for kv in a.set for x in ("--set", kv)])
    doc = {"model": "FashionCNN (2 conv-BN-ReLU-pool blocks, BN MLP head), 28 px grey",
           "own_training": own, "command": "interpretgan run --model-file fashion_cnn.py:build "
           "--checkpoint fashion_cnn.pt --dataset fashion-mnist" + "".join(f" --set {kv}" for kv in a.set),
           "torch_threads": torch.get_num_threads(), **summarize(results, unit, wall)}
    text = json.dumps(doc, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
