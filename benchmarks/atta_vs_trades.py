"""ATTA-1 + TRADES vs TRADES with a PGD-k inner attack, trained side by side: the time of an
epoch, and clean and PGD-40 accuracy after the same number of epochs (same data subset, model,
seed, batch and learning-rate schedule).

    python benchmarks/atta_vs_trades.py --train-subset 10000 --epochs 4 --test-subset 1000 \\
        --json docs/atta_vs_trades.json

The two trainings alternate epoch by epoch (ATTA, TRADES, then TRADES, ATTA, …); each model
persists across its epochs (its run folder under ``--out`` is resumed), so the machine's drift
hits both alike. An epoch's time counts its training steps only (not the data loading, the
evaluation or the checkpoint). Prints seconds per epoch (median and range), the ratio
TRADES / ATTA of each alternated pair of epochs (median and range) and, after the last epoch,
both models' clean and PGD-40 accuracy on the same fixed test subset. ``--json PATH`` writes
the machine, the command, the settings and every epoch. Both in fp32. At the defaults: about
10 minutes on 2 CPU cores (TRADES-40's epochs are most of it). The run folders start afresh
unless ``--resume`` (then a killed run continues where it stopped).
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from _record import command, machine, median_range
from interpretgan.data import load_split
from interpretgan.models import load_classifier
from interpretgan.robust.attacks import get_attack
from interpretgan.robust.config import TrainConfig, train_preset_for
from interpretgan.robust.evaluate import accuracy, robust_accuracy
from interpretgan.robust.training import train_classifier
from interpretgan.runtime.runs import read_jsonl
from interpretgan.settings import merge

ATTA = "atta-1 trades"


def configs(a) -> dict[str, TrainConfig]:
    """ATTA-1 TRADES and TRADES PGD-k: their presets, cut to ``a.epochs`` (lr ×0.1 for the
    last), on the same training subset and the same fixed test subset."""
    common = {"epochs": a.epochs, "lr_milestones": (a.epochs - 1,), "eval_attack": None,
              "checkpoint_every_s": 0, "data.train_subset": a.train_subset,
              "data.test_subset": a.test_subset}
    return {ATTA: merge(train_preset_for("mnist", "atta-trades"), common),
            f"trades pgd-{a.trades_steps}": merge(train_preset_for("mnist", "trades"),
                                                  {**common, "attack_steps": a.trades_steps})}


def train_alternated(runs: dict[str, tuple[TrainConfig, Path]], epochs: int) -> list[list[str]]:
    """One epoch of each, in turn, the order swapped every round; the order of every round."""
    names, orders = list(runs), []
    for epoch in range(epochs):
        order = names if epoch % 2 == 0 else names[::-1]
        for name in order:
            cfg, run = runs[name]
            train_classifier(cfg, run, stop_after=1, progress=False)
        orders.append(order)
    return orders


def evaluate(cfg: TrainConfig, run: Path) -> dict:
    """The model after its last epoch: its epochs' times and test accuracy, and clean and PGD-40
    accuracy on the fixed test subset (fixed random starts)."""
    rows = read_jsonl(run / "metrics.jsonl")
    net = load_classifier(run / "checkpoints" / "final.pt")
    test = load_split(cfg.data, "test")
    return {"run": str(run), "method": cfg.method, "epochs": len(rows), "step_size": cfg.step_size,
            "attack_steps": 1 if cfg.method == "atta-trades" else cfg.attack_steps,
            "train_s": [r["train_s"] for r in rows], "test_acc_per_epoch": [r["test_acc"] for r in rows],
            "clean_accuracy": accuracy(net, test),
            "pgd40_accuracy": robust_accuracy(net, test, get_attack("pgd-40", "mnist"))}


def settings(a, cfg: TrainConfig) -> dict:
    pgd = get_attack("pgd-40", "mnist")
    return {"train_subset": a.train_subset, "test_subset": a.test_subset, "epochs": a.epochs,
            "batch_size": cfg.batch_size, "lr": cfg.lr, "momentum": cfg.momentum,
            "lr_milestones": list(cfg.lr_milestones), "lr_gamma": cfg.lr_gamma, "eps": cfg.eps,
            "beta": cfg.beta, "seed": cfg.seed, "amp": cfg.amp, "trades_steps": a.trades_steps,
            "eval_attack": {"name": pgd.name, "eps": pgd.eps, "alpha": pgd.alpha, "steps": pgd.steps,
                            "early_stop": True}}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-subset", type=int, default=10000, help="MNIST training images")
    p.add_argument("--test-subset", type=int, default=1000, help="MNIST test images (a fixed subset)")
    p.add_argument("--epochs", type=int, default=4, help="epochs of each method")
    p.add_argument("--trades-steps", type=int, default=40, help="TRADES' inner KL steps")
    p.add_argument("--out", type=Path, default=Path("runs/bench-atta-vs-trades"))
    p.add_argument("--resume", action="store_true", help="continue the run folders under --out")
    p.add_argument("--json", type=Path, help="also write the settings and every epoch here")
    a = p.parse_args()
    t0, mach = time.perf_counter(), machine()
    cfgs = configs(a)
    runs = {name: (cfg, a.out / name.replace(" ", "_")) for name, cfg in cfgs.items()}
    if not a.resume:
        for _, run in runs.values():
            shutil.rmtree(run, ignore_errors=True)
    orders = train_alternated(runs, a.epochs)
    res = {name: evaluate(cfg, run) for name, (cfg, run) in runs.items()}
    atta, trades = res.values()
    ratios = [t / s for s, t in zip(atta["train_s"], trades["train_s"])]
    print(f"{a.train_subset} training images, {a.epochs} epochs each, alternated; "
          f"accuracy on {a.test_subset} test images")
    print(f"{'method':<16}{'epochs':>7}{'s / epoch median [range]':>28}{'clean %':>9}{'PGD-40 %':>10}")
    for name, r in res.items():
        print(f"{name:<16}{r['epochs']:>7}{median_range(r['train_s'], '{:.1f}'):>28}"
              f"{100 * r['clean_accuracy']:>9.2f}{100 * r['pgd40_accuracy']:>10.2f}")
    print(f"TRADES / ATTA time per epoch, epoch by epoch: {median_range(ratios)}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({
            "command": command(), "machine": mach, "settings": settings(a, cfgs[ATTA]),
            "methods": res, "order": orders, "ratios": ratios, "wall_s": time.perf_counter() - t0},
            indent=2) + "\n")


if __name__ == "__main__":
    main()
