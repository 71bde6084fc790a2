"""ATTA-1 + TRADES vs TRADES with a PGD-k inner attack: epoch time and PGD-40 accuracy after
the same number of epochs (same data subset, model, seed, schedule).

    python benchmarks/atta_vs_trades.py --train-subset 10000 --epochs 4 --test-subset 1000

The two trainings alternate epoch by epoch (A B, then B A, …), so that the machine's drift hits
both alike. Prints seconds per epoch (median and range over the epochs, training steps only),
the per-epoch time ratio TRADES / ATTA of each round (median and range) and both models' clean
and PGD-40 accuracy. Run folders go under --out (resumable).
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from interpretgan.attacks import get_attack, robust_accuracy
from interpretgan.config import merge, train_preset_for
from interpretgan.models import load_classifier
from interpretgan.runs import read_jsonl
from interpretgan.data import load_split
from interpretgan.training import train_classifier


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--train-subset", type=int, default=10000)
    p.add_argument("--test-subset", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--trades-steps", type=int, default=40)
    p.add_argument("--out", default="runs/bench-atta-vs-trades")
    a = p.parse_args()
    common = {"epochs": a.epochs, "lr_milestones": (a.epochs - 1,), "eval_attack": None,
              "data.train_subset": a.train_subset}
    atta = merge(train_preset_for("mnist", "atta-trades"), common)
    trades = merge(train_preset_for("mnist", "trades"), {**common, "attack_steps": a.trades_steps})
    test = load_split(atta.data, "test").subset(a.test_subset)
    pgd40 = get_attack("pgd-40", "mnist")
    runs = {"atta-1 trades": (atta, Path(a.out) / "atta-1_trades"),
            f"trades pgd-{a.trades_steps}": (trades, Path(a.out) / f"trades_pgd-{a.trades_steps}")}
    for epoch in range(a.epochs):  # alternate epoch by epoch, swapping the order every round
        order = list(runs) if epoch % 2 == 0 else list(runs)[::-1]
        for name in order:
            cfg, run = runs[name]
            train_classifier(cfg, run, stop_after=1)
    times = {name: [r["train_s"] for r in read_jsonl(run / "metrics.jsonl")] for name, (_, run) in runs.items()}
    (atta_name, trades_name) = list(runs)
    ratios = [t / s for s, t in zip(times[atta_name], times[trades_name])]
    print(f"{a.train_subset} training images, {a.epochs} epochs alternated, PGD-40 on {a.test_subset} test images")
    print(f"{'method':<18}{'s/epoch median [range]':>26}{'clean %':>9}{'PGD-40 %':>10}")
    for name, (_, run) in runs.items():
        net = load_classifier(run / "checkpoints" / "final.pt")
        acc = robust_accuracy(net, test, pgd40)
        clean = read_jsonl(run / "metrics.jsonl")[-1]["test_acc"]
        t = times[name]
        print(f"{name:<18}{statistics.median(t):>12.1f} [{min(t):.1f}, {max(t):.1f}]{'':>4}"
              f"{100 * clean:>9.2f}{100 * acc:>10.2f}")
    print(f"speed-up of ATTA-1 per epoch (TRADES / ATTA, epoch by epoch): median {statistics.median(ratios):.1f}x "
          f"[{min(ratios):.1f}, {max(ratios):.1f}]")


if __name__ == "__main__":
    main()
