"""PGD-40 accuracy evaluation, images/s: ours (early stop on misclassified samples) vs
torchattacks' PGD, on the same models and images, side by side in one run.

    python benchmarks/pgd_speed.py --natural RUN/checkpoints/final.pt --robust RUN2/checkpoints/final.pt --n 500

Prints images/s, the speed ratio and both accuracies per model; where the CPU/GPU has bf16
units, also our PGD under bf16 autocast (same early stop) against the same torchattacks run.
"""
from __future__ import annotations

import argparse
import dataclasses
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--natural", required=True)
    p.add_argument("--robust", required=True)
    p.add_argument("--n", type=int, default=500)
    a = p.parse_args()
    test = load_mnist("test").subset(a.n, seed=0)
    atk = get_attack("pgd-40", "mnist")
    print(f"PGD-40 (eps {atk.eps}, alpha {atk.alpha}) on {a.n} MNIST test images")
    print(f"{'model':<16}{'ours img/s':>12}{'t.attacks img/s':>17}{'ratio':>8}{'ours acc':>10}{'t.a. acc':>10}")
    variants = [("", atk)] + ([(" bf16", dataclasses.replace(atk, amp=True))] if native_bf16() else [])
    for label, path in [("natural", a.natural), ("robust", a.robust)]:
        m = load_classifier(path)
        t = time.perf_counter()
        theirs = torchattacks_accuracy(m, test, atk.eps, atk.alpha, atk.steps)
        t_theirs = time.perf_counter() - t
        for tag, attack in variants:
            t = time.perf_counter()
            ours = robust_accuracy(m, test, attack, early_stop=True)
            t_ours = time.perf_counter() - t
            print(f"{label + tag:<16}{a.n / t_ours:>12.1f}{a.n / t_theirs:>17.1f}{t_theirs / t_ours:>8.2f}"
                  f"{100 * ours:>10.2f}{100 * theirs:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
