"""PGD-40 accuracy evaluation, images/s: ours (early stop on misclassified samples) vs
torchattacks' PGD, on the same models and images, in alternating rounds (the variants' order
rotates every round, so that the machine's drift hits all alike).

    python benchmarks/pgd_speed.py --natural RUN/checkpoints/final.pt --robust RUN2/checkpoints/final.pt --n 500

Prints images/s (median over rounds), the speed ratio torchattacks time / ours of each round
(median and range) and both accuracies per model; where the CPU/GPU has bf16 units, also our
PGD under bf16 autocast (same early stop). ``--robust`` may be left out.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from interpretgan.attacks import get_attack, robust_accuracy
from interpretgan.data import load_mnist
from interpretgan.models import load_classifier
from interpretgan.precision import native_bf16


def torchattacks_accuracy(model, ds, eps, alpha, steps, batch_size=500, seed=0):
    import torchattacks

    torch.manual_seed(seed)
    atk = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    correct = 0
    for s in range(0, len(ds), batch_size):
        x = ds.images[s: s + batch_size].float() / 255
        y = ds.labels[s: s + batch_size]
        xa = atk(x, y)
        with torch.no_grad():
            correct += (model(xa).argmax(1) == y).sum().item()
    return correct / len(ds)


def timed(fn) -> tuple[float, float]:
    t = time.perf_counter()
    acc = fn()
    return time.perf_counter() - t, acc


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--natural", required=True)
    p.add_argument("--robust")
    p.add_argument("--n", type=int, default=500)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    test = load_mnist("test").subset(a.n, seed=0)
    atk = get_attack("pgd-40", "mnist")
    print(f"PGD-40 (eps {atk.eps}, alpha {atk.alpha}) on {a.n} MNIST test images, {a.rounds} alternating rounds")
    print(f"{'model':<16}{'ours img/s':>12}{'t.attacks img/s':>17}{'ratio median [range]':>24}"
          f"{'ours acc':>10}{'t.a. acc':>10}")
    variants = [("", atk)] + ([(" bf16", dataclasses.replace(atk, amp=True))] if native_bf16() else [])
    for label, path in [("natural", a.natural), ("robust", a.robust)]:
        if path is None:
            continue
        m = load_classifier(path)
        runs = {"theirs": lambda: torchattacks_accuracy(m, test, atk.eps, atk.alpha, atk.steps)}
        for tag, attack in variants:
            runs[tag] = lambda attack=attack: robust_accuracy(m, test, attack, early_stop=True)
        secs: dict[str, list[float]] = {k: [] for k in runs}
        accs: dict[str, float] = {}
        names = list(runs)
        for r in range(a.rounds):
            for k in names[r % len(names):] + names[: r % len(names)]:
                t, accs[k] = timed(runs[k])
                secs[k].append(t)
        for tag, _ in variants:
            ratios = [t / o for t, o in zip(secs["theirs"], secs[tag])]
            print(f"{label + tag:<16}{a.n / statistics.median(secs[tag]):>12.1f}"
                  f"{a.n / statistics.median(secs['theirs']):>17.1f}"
                  f"{statistics.median(ratios):>12.2f} [{min(ratios):.2f}, {max(ratios):.2f}]"
                  f"{100 * accs[tag]:>10.2f}{100 * accs['theirs']:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
