"""Everyday models through ``interpretgan run``: a user's classifier on a folder of RGB images.

Writes a 4-class RGB image folder at 32 px (MNIST digits 0–3, each drawn in a random colour
on a background of another random colour, so that colour says nothing about the class),
trains each model on it for a few epochs with normalised inputs (Adam, batch 64), saves its
``state_dict`` and diagnoses it at the quick preset::

    interpretgan run --model-file MODEL --checkpoint CKPT --dataset folder --data-dir DIR \\
        --normalize M1,M2,M3,S1,S2,S3 --layers ... --run-dir OUT/run_<model>

Models (``--models``, comma list):

* ``vit``: ``examples/vit.py`` (patch 4, CLS token, four pre-norm blocks of width 64),
  explained at the patch embedding, blocks 1 and 3, the final norm and the head;
* ``cnn``: ``examples/inplace_cnn.py`` (conv → BN → ReLU(inplace=True), residual blocks with
  ``out += identity``), explained at conv1, layer1, layer2 and the head.

The cost unit is the model's own natural training epoch on the folder's training split,
measured in this script (the median of its epochs): ``run`` has no natural model of its own
for a user's classifier, so the budget in its results.json is null. A model trained before
(``OUT/<model>.pt`` with ``OUT/<model>.train.json``, its epoch times) is not trained again:
run again, the script resumes an interrupted ``interpretgan run`` where it stopped. Writes one JSON document
(``--json``) with, per model: clean and adversarial accuracy, the generators' agreement per
layer and generator seed, how each layer was read, the run's stage times and its cost in
natural-epoch units.

    python benchmarks/everyday_models.py --models vit --json docs/everyday_models.json
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from interpretgan.config import DataConfig
from interpretgan.data import batches, load_mnist, load_split
from interpretgan.pipeline import load_model_file
from interpretgan.runs import read_json, read_jsonl

log = logging.getLogger("everyday_models")
REPO = Path(__file__).resolve().parent.parent
CLASSES = ("zero", "one", "two", "three")
PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                    [145, 30, 180], [70, 240, 240], [240, 50, 230], [250, 250, 250], [20, 20, 20]],
                   dtype=np.float32)
MODELS = {
    "vit": ("examples/vit.py:build", "embed,blocks.1,blocks.3,norm,head", 3),
    "cnn": ("examples/inplace_cnn.py:build", "conv1,layer1,layer2,fc", 2),
}


def write_folder(root: Path, train_per_class: int, test_per_class: int, seed: int = 0) -> Path:
    """``root/{train,test}/<class>/*.png``: coloured MNIST digits 0–3 at 32 px (a digit's and
    its background's colours drawn from a 10-colour palette, never the same)."""
    from PIL import Image

    if (root / "done").exists():
        return root
    rng = np.random.default_rng(seed)
    for split, per in (("train", train_per_class), ("test", test_per_class)):
        ds = load_mnist(split, size=32)
        for k, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            idx = (ds.labels == k).nonzero().squeeze(1)[:per]
            for i, j in enumerate(idx.tolist()):
                m = ds.images[j, 0].numpy().astype(np.float32)[..., None] / 255  # (32, 32, 1)
                fg, bg = rng.choice(len(PALETTE), 2, replace=False)
                img = m * PALETTE[fg] + (1 - m) * PALETTE[bg]
                Image.fromarray(img.round().clip(0, 255).astype(np.uint8)).save(root / split / name / f"{i:05d}.png")
    (root / "done").write_text("ok\n")
    return root


def channel_stats(data_dir: Path) -> list[float]:
    """Per-channel mean then std of the training images in [0, 1] (what ``--normalize`` takes)."""
    x = load_split(DataConfig(dataset="folder", data_dir=str(data_dir)), "train").images.float() / 255
    return [*x.mean((0, 2, 3)).tolist(), *x.std((0, 2, 3)).tolist()]


def train(spec: str, data_dir: Path, stats: list[float], epochs: int, ckpt: Path) -> dict:
    """Train the model of ``spec`` on the folder (normalised inputs, Adam 1e-3 with a cosine
    schedule, batch 64) and save its state_dict; returns epoch times and test accuracy."""
    torch.manual_seed(0)
    net = load_model_file(str(REPO / spec))
    cfg = DataConfig(dataset="folder", data_dir=str(data_dir))
    tr, te = load_split(cfg, "train"), load_split(cfg, "test")
    mean, std = torch.tensor(stats[:3]).view(1, 3, 1, 1), torch.tensor(stats[3:]).view(1, 3, 1, 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * -(-len(tr) // 64))
    seconds = []
    for epoch in range(epochs):
        net.train()
        t0 = time.perf_counter()
        for x, y in batches(tr, 64, shuffle=True, seed=0, epoch=epoch):
            loss = F.cross_entropy(net((x - mean) / std), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        seconds.append(time.perf_counter() - t0)
        log.info("%s epoch %d: %.1f s, last loss %.3f", spec, epoch + 1, seconds[-1], loss.item())
    net.eval()
    with torch.no_grad():
        hits = sum((net((x - mean) / std).argmax(1) == y).sum().item() for x, y in batches(te, 500))
    torch.save(net.state_dict(), ckpt)
    return {"epochs": epochs, "epoch_s": seconds, "natural_epoch_s": statistics.median(seconds),
            "test_accuracy": hits / len(te)}


def diagnose(spec: str, layers: str, data_dir: Path, stats: list[float], ckpt: Path, run_dir: Path,
             extra: list[str]) -> dict:
    """``interpretgan run`` on the trained model at the quick preset; returns results.json."""
    cmd = [sys.executable, "-m", "interpretgan", "-q", "run", "--model-file", str(REPO / spec),
           "--checkpoint", str(ckpt), "--dataset", "folder", "--data-dir", str(data_dir),
           "--normalize", ",".join(f"{v:.4f}" for v in stats), "--layers", layers,
           "--run-dir", str(run_dir), *extra]
    log.info("%s", " ".join(cmd))
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    return read_json(run_dir / "results.json")


def running_agreement(run_dir: Path) -> dict[str, dict[int, float]]:
    """Per member, the fit's running agreement on 200 held-out images by step
    (``fit/metrics.jsonl``): how a generator got to (or stayed below) its final agreement."""
    curves: dict[str, dict[int, float]] = {}
    for rec in read_jsonl(run_dir / "user" / "fit" / "metrics.jsonl"):
        for key, v in rec.items():
            if key.endswith("/agreement200"):
                curves.setdefault(key.rsplit("/", 1)[0], {})[rec["step"]] = v
    return curves


def row(name: str, spec: str, trained: dict, res: dict, command: str, run_dir: Path) -> dict:
    """The JSON row of one model: accuracy, agreement per layer and seed, cost in epoch units."""
    u = res["user"]
    gen = u["generators"]["layers"]
    unit = trained["natural_epoch_s"]
    stages = sum(res["timings_s"].values())
    return {
        "model": name, "model_file": spec, "command": command,
        "train": trained, "clean_accuracy": u["clean_accuracy"], "attack": u["attack"],
        "adversarial_accuracy": u["adversarial_accuracy"],
        "agreement": {n: r["agreement"] for n, r in gen.items()},
        "agreement_scheduled": {n: r.get("agreement_scheduled") for n, r in gen.items()},
        "extra_steps": {n: r.get("extra_steps") for n, r in gen.items()},
        "reliable": {n: p.get("reliable") for n, p in u["per_layer"].items()},
        "agreement_floor": u["generators"].get("agreement_floor"),
        "min_agreement": min(r["agreement"] for r in gen.values()),
        "acc_i": {n: p["acc"] for n, p in u["per_layer"].items()},
        "layer_reading": {n: p.get("layer_reading") for n, p in u["per_layer"].items()},
        "timings_s": res["timings_s"], "stages_s": stages,
        "epoch_units": stages / unit,
        "running_agreement": running_agreement(run_dir),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="vit", help="comma list of " + ", ".join(MODELS))
    p.add_argument("--out", default="runs/everyday", help="folder for the images, checkpoints and runs")
    p.add_argument("--json", help="write the rows here (e.g. docs/everyday_models.json)")
    p.add_argument("--train-per-class", type=int, default=5000)
    p.add_argument("--test-per-class", type=int, default=900)
    p.add_argument("--epochs", type=int, help="training epochs (default: per model)")
    p.add_argument("--run-arg", action="append", default=[], help="extra `interpretgan run` argument")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    names = a.models.split(",")
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        print(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(MODELS)}", file=sys.stderr)
        return 2
    out = Path(a.out)
    data = write_folder(out / "folder", a.train_per_class, a.test_per_class)
    stats = channel_stats(data)
    rows = []
    for name in names:
        spec, layers, epochs = MODELS[name]
        ckpt, record = out / f"{name}.pt", out / f"{name}.train.json"
        if ckpt.exists() and record.exists():  # trained before: the run resumes where it stopped
            trained = json.loads(record.read_text())
        else:
            trained = train(spec, data, stats, a.epochs or epochs, ckpt)
            record.write_text(json.dumps(trained, indent=2) + "\n")
        res = diagnose(spec, layers, data, stats, ckpt, out / f"run_{name}", a.run_arg)
        command = (f"python benchmarks/everyday_models.py --models {name}"
                   + (f" --epochs {a.epochs}" if a.epochs else ""))
        rows.append(row(name, spec, trained, res, command, out / f"run_{name}"))
        r = rows[-1]
        print(f"{name}: clean {100 * r['clean_accuracy']:.1f}%  {r['attack']} "
              f"{100 * r['adversarial_accuracy']:.1f}%  min agreement {r['min_agreement']:.3f}  "
              f"cost {r['epoch_units']:.1f} natural epochs of {trained['natural_epoch_s']:.1f} s")
        for n, v in r["agreement"].items():
            print(f"    {n:<22} agreement {v:.3f}")
    if a.json:  # rows of models not run this time are kept
        old = json.loads(Path(a.json).read_text())["rows"] if Path(a.json).exists() else []
        doc = {"machine": "2-core AVX-512-BF16 CPU", "torch": torch.__version__,
               "folder": {"classes": list(CLASSES), "train_per_class": a.train_per_class,
                          "test_per_class": a.test_per_class, "image_size": 32},
               "rows": [r for r in old if r["model"] not in names] + rows}
        Path(a.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
