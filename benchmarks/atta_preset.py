"""The ``mnist-atta-trades`` preset against the target of ≥ 88 % under PGD-40: the preset as it
is (4 epochs, fp32), cut to 3 epochs (lr ×0.1 for the third), and under bf16 autocast (the
main job's ``mnist-atta-trades-quick`` on a machine with bf16 units), each trained from the
same seed on all 60,000 training images and evaluated on all 10,000 test images.

    python benchmarks/atta_preset.py --json docs/atta_preset.json

Each variant logs, after every epoch, its test accuracy and PGD-40 accuracy on the preset's
500-image subset (``metrics.jsonl``); after the last epoch, clean and PGD-40 accuracy on the
whole test set (evaluation in fp32, the attack's fixed random starts). ``--json PATH`` writes
the settings, every epoch and the final numbers with the command and the machine. About
35 minutes on 2 CPU cores with bf16 units (the three PGD-40 passes over 10,000 images are
about half of it). Run folders under ``--out`` are resumed when ``--resume`` is given.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from _record import machine, write
from interpretgan.data import load_split
from interpretgan.models import load_classifier
from interpretgan.robust.attacks import get_attack
from interpretgan.robust.config import TrainConfig, train_preset_for
from interpretgan.robust.evaluate import accuracy, robust_accuracy
from interpretgan.robust.training import train_classifier
from interpretgan.runtime.runs import read_jsonl
from interpretgan.settings import merge

# name → overrides of the preset (``--variants`` picks among them, in this order)
VARIANTS: dict[str, dict] = {
    "4 epochs fp32": {},
    "3 epochs fp32": {"epochs": 3, "lr_milestones": (2,)},
    "4 epochs bf16": {"amp": "on"},
}


def variant_config(overrides: dict, seed: int) -> TrainConfig:
    """The preset with ``overrides``, every epoch's PGD-40 on its subset, no timed checkpoints."""
    return merge(train_preset_for("mnist", "atta-trades"),
                 {**overrides, "seed": seed, "eval_attack_every": 1, "checkpoint_every_s": 0})


def evaluate(cfg: TrainConfig, run: Path) -> dict:
    """Every epoch's row (test accuracy, PGD-40 on the 500-image subset, training seconds) and
    clean and PGD-40 accuracy on the whole test split, in fp32."""
    rows = read_jsonl(run / "metrics.jsonl")
    net = load_classifier(run / "checkpoints" / "final.pt")
    test = load_split(cfg.data, "test")
    t0 = time.perf_counter()
    robust = robust_accuracy(net, test, get_attack("pgd-40", "mnist"))
    return {"epochs": [{k: r[k] for k in ("epoch", "lr", "test_acc", "pgd-40_acc", "train_s") if k in r}
                       for r in rows],
            "amp": cfg.amp, "lr_milestones": list(cfg.lr_milestones),
            "test_images": len(test), "clean_accuracy": accuracy(net, test),
            "pgd40_accuracy": robust, "pgd40_seconds": time.perf_counter() - t0}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated, of: {', '.join(VARIANTS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/bench-atta-preset"))
    p.add_argument("--resume", action="store_true", help="continue the run folders under --out")
    p.add_argument("--json", type=Path, help="also write the settings, every epoch and the results here")
    a = p.parse_args()
    names = [n.strip() for n in a.variants.split(",")]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    t0, mach = time.perf_counter(), machine()
    results = {}
    for name in names:
        cfg, run = variant_config(VARIANTS[name], a.seed), a.out / name.replace(" ", "_")
        if not a.resume:
            shutil.rmtree(run, ignore_errors=True)
        train_classifier(cfg, run, progress=False)
        results[name] = evaluate(cfg, run)
        r = results[name]
        print(f"{name:<16} clean {100 * r['clean_accuracy']:.2f} %  PGD-40 {100 * r['pgd40_accuracy']:.2f} % "
              f"on {r['test_images']} test images", flush=True)
    if a.json:
        pgd = get_attack("pgd-40", "mnist")
        base = variant_config({}, a.seed)
        write(a.json, {
            "settings": {"preset": "mnist-atta-trades", "seed": a.seed, "batch_size": base.batch_size,
                         "lr": base.lr, "momentum": base.momentum, "eps": base.eps, "beta": base.beta,
                         "step_size": base.step_size, "eval_attack_subset": base.eval_attack_subset,
                         "target_pgd40": 0.88,
                         "overrides": {n: {k: list(v) if isinstance(v, tuple) else v for k, v in VARIANTS[n].items()}
                                       for n in names},
                         "attack": {"name": pgd.name, "eps": pgd.eps, "alpha": pgd.alpha, "steps": pgd.steps}},
            "variants": results, "wall_s": time.perf_counter() - t0}, mach)


if __name__ == "__main__":
    main()
