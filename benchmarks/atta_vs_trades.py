"""ATTA-1 + TRADES vs TRADES with a PGD-k inner attack: epoch time and PGD-40 accuracy after
the same number of epochs, side by side in one run (same data subset, model, seed, schedule).

    python benchmarks/atta_vs_trades.py --train-subset 10000 --epochs 4 --test-subset 1000

Prints seconds per epoch, the time ratio (TRADES / ATTA) and both models' clean and PGD-40
accuracy. Run folders go under --out (resumable).
"""
from __future__ import annotations

import argparse
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
    rows = []
    for name, cfg in [("atta-1 trades", atta), (f"trades pgd-{a.trades_steps}", trades)]:
        run = Path(a.out) / name.replace(" ", "_")
        train_classifier(cfg, run)
        rows_ = read_jsonl(run / "metrics.jsonl")
        per_epoch = sum(r["train_s"] for r in rows_) / len(rows_)  # training steps only
        net = load_classifier(run / "checkpoints" / "final.pt")
        acc = robust_accuracy(net, test, pgd40)
        clean = rows_[-1]["test_acc"]
        rows.append((name, per_epoch, clean, acc))
    print(f"{a.train_subset} training images, {a.epochs} epochs, PGD-40 on {a.test_subset} test images")
    print(f"{'method':<18}{'s/epoch':>9}{'clean %':>9}{'PGD-40 %':>10}")
    for name, t, clean, acc in rows:
        print(f"{name:<18}{t:>9.1f}{100 * clean:>9.2f}{100 * acc:>10.2f}")
    print(f"speed-up of ATTA-1 per epoch: {rows[1][1] / rows[0][1]:.1f}x; "
          f"PGD-40 difference (ATTA - TRADES): {100 * (rows[0][3] - rows[1][3]):+.2f} pt")


if __name__ == "__main__":
    main()
