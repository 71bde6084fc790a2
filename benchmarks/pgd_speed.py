"""PGD-40 accuracy evaluation: ours (early stop on misclassified samples) vs torchattacks' PGD,
on the same models and images, timed side by side in alternating rounds.

    python benchmarks/pgd_speed.py --natural NATURAL.pt --robust ROBUST.pt --n 500 --rounds 5 \\
        --json docs/pgd_speed.json

Every round runs each variant once over the same ``--n`` test images; the variants' order
rotates by one every round (torchattacks, ours, ours bf16; then ours, ours bf16, torchattacks;
…), so that the machine's drift hits all alike. Where the CPU/GPU has bf16 units, our PGD under
bf16 autocast (same early stop) is a third variant (``--no-bf16`` leaves it out). Prints, per
model and variant, the seconds of a pass (median and range over the rounds), the ratio
torchattacks time / this variant's time of each round (median and range) and the accuracies.
``--json PATH`` writes the machine, the command, the settings and every round's times and
accuracies. ``--robust`` may be left out. At the defaults: about 3 minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from _record import command, machine, median_range
from interpretgan.data import load_mnist
from interpretgan.models import load_classifier
from interpretgan.robust.attacks import Attack, get_attack
from interpretgan.robust.evaluate import robust_accuracy
from interpretgan.runtime.precision import native_bf16

BATCH = 500  # images per attack call, both implementations


def torchattacks_accuracy(model, ds, atk: Attack, seed: int = 0) -> float:
    """Accuracy under torchattacks' PGD with ``atk``'s ε, α and steps (random start)."""
    import torchattacks

    torch.manual_seed(seed)
    pgd = torchattacks.PGD(model, eps=atk.eps, alpha=atk.alpha, steps=atk.steps, random_start=True)
    correct = 0
    for s in range(0, len(ds), BATCH):
        x = ds.images[s: s + BATCH].float() / 255
        y = ds.labels[s: s + BATCH]
        xa = pgd(x, y)
        with torch.no_grad():
            correct += (model(xa).argmax(1) == y).sum().item()
    return correct / len(ds)


def variants(model, ds, atk: Attack, bf16: bool) -> dict[str, Callable[[], float]]:
    """Each variant as a call that returns its accuracy on ``ds``; torchattacks first."""
    runs = {"torchattacks": lambda: torchattacks_accuracy(model, ds, atk),
            "ours": lambda: robust_accuracy(model, ds, atk, BATCH, early_stop=True)}
    if bf16:
        amp = dataclasses.replace(atk, amp=True)
        runs["ours bf16"] = lambda: robust_accuracy(model, ds, amp, BATCH, early_stop=True)
    return runs


def alternate(runs: dict[str, Callable[[], float]], rounds: int) -> dict:
    """``rounds`` rounds of every variant, the order rotated by one each round: per variant
    its seconds and accuracy of every round, the order of every round."""
    names = list(runs)
    out = {"order": [], "variants": {n: {"seconds": [], "accuracy": []} for n in names}}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        out["order"].append(order)
        for name in order:
            t = time.perf_counter()
            acc = runs[name]()
            out["variants"][name]["seconds"].append(time.perf_counter() - t)
            out["variants"][name]["accuracy"].append(acc)
    theirs = out["variants"]["torchattacks"]["seconds"]
    out["ratios"] = {n: [t / s for t, s in zip(theirs, out["variants"][n]["seconds"])]
                     for n in names if n != "torchattacks"}
    return out


def measure(label: str, path: str, test, atk: Attack, rounds: int, bf16: bool) -> dict:
    """One model: a warm-up pass of every variant on a few images, then the alternated rounds."""
    model = load_classifier(path)
    for run in variants(model, test.subset(min(len(test), 20)), atk, bf16).values():
        run()
    res = alternate(variants(model, test, atk, bf16), rounds)
    return {"model": label, "checkpoint": path, **res}


def show(row: dict, n: int) -> None:
    for name, v in row["variants"].items():
        ratio = median_range(row["ratios"][name]) if name in row["ratios"] else "–"
        accs = sorted({round(100 * a, 2) for a in v["accuracy"]})
        print(f"{row['model']:<9}{name:<14}{median_range(v['seconds'], '{:.1f}'):>22}"
              f"{n / statistics.median(v['seconds']):>9.1f}{ratio:>22}{' / '.join(map(str, accs)):>10}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--natural", required=True, help="checkpoint of a natural MNIST classifier")
    p.add_argument("--robust", help="checkpoint of an adversarially trained MNIST classifier")
    p.add_argument("--n", type=int, default=500, help="MNIST test images (a fixed subset)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-bf16", action="store_true", help="leave out our PGD under bf16 autocast")
    p.add_argument("--json", type=Path, help="also write the settings and every round here")
    a = p.parse_args()
    t0, mach = time.perf_counter(), machine()
    test = load_mnist("test").subset(a.n, seed=0)
    atk = get_attack("pgd-40", "mnist")
    bf16 = native_bf16() and not a.no_bf16
    print(f"PGD-40 (eps {atk.eps}, alpha {atk.alpha}) on {a.n} MNIST test images, {a.rounds} alternating rounds")
    print(f"{'model':<9}{'variant':<14}{'s median [range]':>22}{'img/s':>9}{'t.a. / this [range]':>22}{'acc %':>10}")
    rows = []
    for label, path in (("natural", a.natural), ("robust", a.robust)):
        if path is not None:
            rows.append(measure(label, path, test, atk, a.rounds, bf16))
            show(rows[-1], a.n)
    if a.json:
        import torchattacks
        settings = {"images": a.n, "rounds": a.rounds, "attack": atk.name, "eps": atk.eps, "alpha": atk.alpha,
                    "steps": atk.steps, "random_start": atk.random_start, "batch_size": BATCH,
                    "ours_early_stop": True, "bf16_variant": bf16, "torchattacks": torchattacks.__version__}
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"command": command(), "machine": mach,
                                      "settings": settings, "models": rows,
                                      "wall_s": time.perf_counter() - t0}, indent=2) + "\n")


if __name__ == "__main__":
    main()
