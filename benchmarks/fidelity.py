"""Reproduction study of the paper's Table 1 (natural SmallCNN row): how Acc_i moves with the
classifier's training schedule and with the generator's steps, width, λ, warm-up and seed, and
how much of Acc_i the generator's infidelity to f explains.

    python benchmarks/fidelity.py --out runs/fidelity                      # every point
    python benchmarks/fidelity.py --out runs/fidelity --points base,classifier-3ep
    python benchmarks/fidelity.py --out runs/fidelity --figures docs/figures  # figures only

Every point fits generators for the seven default layers of one natural MNIST SmallCNN (the
quick fit preset with the point's changes; several generator seeds fitted together), and
diagnoses them on the PGD-40 D* of 2,000 test images (``diagnose_model``: Acc_i with Wilson
intervals, each seed's Acc_i, keeps-adversarial-label, natural agreement, Acc_i at natural
fidelity). A noise control is added: the agreement f(x̂) = f(x̃) on x̃ = x + ε·sign(u), random
sign noise of the attack's size (ε = 0.3), which asks whether the explanations depart from f
on any input off the natural images or on adversarial ones only.

Resumable: the classifiers, D*, every fit and every diagnosis are saved under ``--out`` and
reused; a killed run continues where it stopped. ``<out>/study.json`` gathers every finished
point; ``--figures DIR`` draws the figures from it alone.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import torch

from interpretgan.config import FIT_PRESETS, TRAIN_PRESETS, DataConfig
from interpretgan.data import load_split
from interpretgan.devices import resolve_device
from interpretgan.diagnosis.diagnose import (build_dstar, diagnose_model, dstar_indices, explanation_labels, predict,
                                   wilson_interval)
from interpretgan.fitting import fit_and_summarize, load_generators, members_by_layer
from interpretgan.pipeline import PAPER_TABLE1, load_any
from interpretgan.runs import load_checkpoint, read_json, write_json
from interpretgan.training import train_classifier

log = logging.getLogger("fidelity")

CLASSIFIERS = {"natural-10ep": "mnist-natural", "natural-3ep": "mnist-natural-quick"}
# The study's base: the quick fit preset as it was when the study began (a 40 % L_I-only warm-up
# over the first share of all steps, so D trained at 32 px only, the compression networks at
# half Tables 4/5's widths, and no agreement floor, so that every point fits exactly its
# scheduled steps); the points below change it one setting at a time.
QUICK = dataclasses.replace(FIT_PRESETS.get("quick"), warmup_each_scale=False, c_width_mult=0.5,
                            min_agreement=0.0)
STEPS = QUICK.steps_per_scale


def _scaled(k: float) -> tuple[int, ...]:
    return tuple(max(1, round(k * s)) for s in STEPS)


@dataclasses.dataclass(frozen=True)
class Point:
    """One fit: which classifier, which changes to the quick fit preset, and where it sits in
    the figures (``axis``: the varied quantity, ``x``: its value)."""

    classifier: str
    changes: dict
    axis: str
    x: float
    seeds: tuple[int, ...] = (0,)


# In the order they run: the base point and the classifier schedule first (three generator
# seeds each: the seed spread every other point is read against), then one seed per setting.
POINTS = {
    "base": Point("natural-10ep", {}, "base", 1.0, (0, 1, 2)),
    "classifier-3ep": Point("natural-3ep", {}, "classifier epochs", 3, (0, 1, 2)),
    "lambda-0.3": Point("natural-10ep", {"lam": 0.3}, "λ", 0.3),
    "steps-x2": Point("natural-10ep", {"steps_per_scale": _scaled(2)}, "generator steps", 2 * sum(STEPS)),
    "width-x2": Point("natural-10ep", {"g_channels": tuple(2 * c for c in QUICK.g_channels),
                                       "d_channels": tuple(2 * c for c in QUICK.d_channels),
                                       "c_width_mult": 2 * QUICK.c_width_mult}, "generator width", 2),
    "warmup-0": Point("natural-10ep", {"warmup_fraction": 0.0}, "warm-up share", 0.0),
    "lambda-3": Point("natural-10ep", {"lam": 3.0}, "λ", 3.0),
    "warmup-0.8": Point("natural-10ep", {"warmup_fraction": 0.8}, "warm-up share", 0.8),
    "steps-x4": Point("natural-10ep", {"steps_per_scale": _scaled(4)}, "generator steps", 4 * sum(STEPS)),
    # the schedule and width of the quick preset, side by side on the same classifier (two seeds each)
    "base-2seeds": Point("natural-10ep", {}, "schedule", 0, (0, 1)),
    "progressive": Point("natural-10ep", {"warmup_each_scale": True}, "schedule", 1, (0, 1)),
    "progressive-paper-width": Point("natural-10ep", {"warmup_each_scale": True, "c_width_mult": 1.0},
                                     "schedule", 2, (0, 1)),
}


def classifier(out: Path, name: str, device: torch.device) -> Path:
    """The natural classifier ``name`` (trained once), its checkpoint path."""
    run = out / "classifiers" / name
    train_classifier(TRAIN_PRESETS.get(CLASSIFIERS[name]), run, device=device)
    return run / "checkpoints" / "final.pt"


@torch.no_grad()
def noisy_agreement(model, gans: dict, x: torch.Tensor, eps: float, seed: int = 0) -> dict[str, float]:
    """Per layer (mean over its seeds), the share of x̃ = clip(x + ε·sign(u)) whose explanation
    f labels f(x̃). x: (N, C, H, W) on the CPU."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 2, x.shape, generator=g).float() * 2 - 1
    xn = (x + eps * noise).clamp(0, 1)
    ref = predict(model, xn)
    labels = explanation_labels(model, gans, xn)
    return {layer: sum((labels[k] == ref).float().mean().item() for k in keys) / len(keys)
            for layer, keys in members_by_layer(list(gans)).items()}


def run_point(out: Path, name: str, p: Point, device: torch.device, n_dstar: int) -> dict:
    """Fit, diagnose and the noise control for one point (each step reused when saved)."""
    done = out / name / "diagnosis.json"
    if done.exists():
        return read_json(done)
    ckpt = classifier(out, p.classifier, device)
    model = load_any(ckpt, device)
    data = DataConfig()
    test = load_split(data, "test")
    dpath = out / "classifiers" / p.classifier / f"dstar{n_dstar}.pt"
    if not dpath.exists():
        build_dstar(model, test, "pgd-40", "mnist", n_dstar, 0, dpath)
    dstar = load_checkpoint(dpath)
    cfg = dataclasses.replace(QUICK, **p.changes, generator_seeds=p.seeds)
    t0 = time.perf_counter()
    summary_path = out / name / "fit" / "summary.json"
    summary = read_json(summary_path) if summary_path.exists() else fit_and_summarize(
        model, data, cfg, out / name / "fit", dstar_indices=dstar_indices(test, n_dstar))
    fit_s = time.perf_counter() - t0
    gans = {k: g.to(device) for k, g in load_generators(out / name / "fit", 1).items()}
    doc = diagnose_model(model, gans, dstar, 10)
    noisy = noisy_agreement(model, gans, dstar["x"], eps=0.3)
    for row in doc["per_layer"]:
        row["agreement_noisy"] = noisy[row["layer"]]
    doc.update({"point": name, "classifier": p.classifier, "changes": p.changes, "axis": p.axis,
                "x": p.x, "seeds": list(p.seeds), "fit_seconds_this_call": fit_s,
                "kid": {k: v["kid"] for k, v in summary["layers"].items()},
                "kid_real_vs_real": summary["kid_real_vs_real"]})
    write_json(done, doc)
    return doc


# ---------------------------------------------------------------------------- figures
def figures(study: dict, out_dir: Path) -> list[Path]:
    """The study's figures, from ``study.json``'s content alone."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    pts = study["points"]
    labels = study["layer_labels"]
    xs = range(len(labels))
    paths = []

    # 1. Acc_i per layer: the base point, the 3-epoch classifier and the paper's Table 1
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for name, colour, dx in (("base", "#1f77b4", -0.15), ("classifier-3ep", "#ff7f0e", 0.15)):
        if name not in pts:
            continue
        per = pts[name]["per_layer"]
        acc = [100 * r["acc"] for r in per]
        err = [[100 * (r["acc"] - r["acc_ci"][0]) for r in per], [100 * (r["acc_ci"][1] - r["acc"]) for r in per]]
        ax.errorbar([x + dx for x in xs], acc, yerr=err, fmt="o", color=colour, capsize=3,
                    label=f"{name} (mean of {len(pts[name]['seeds'])} seeds, 95 % Wilson)")
        for x, r in zip(xs, per):
            ax.scatter([x + dx] * len(r.get("acc_seeds", [])), [100 * a for a in r.get("acc_seeds", [])],
                       s=8, color=colour, alpha=0.5)
    ax.scatter(list(xs), PAPER_TABLE1["natural"]["acc"], marker="_", s=300, color="black", label="paper Table 1")
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel("Acc_i (%)")
    ax.set_title("Natural SmallCNN, PGD-40 D*: Acc_i per layer", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out_dir / "fidelity_acc_per_layer.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    # 2. Conv1, Conv2 and Conv4 Acc_i against each generator setting (the base point is in every panel)
    axes_names = ["generator steps", "generator width", "λ", "warm-up share"]
    base_x = {"generator steps": sum(STEPS), "generator width": 1, "λ": 1.0,
              "warm-up share": QUICK.warmup_fraction}
    fig, axes = plt.subplots(1, len(axes_names), figsize=(3.2 * len(axes_names), 3), sharey=True)
    n = study.get("dstar_images", 2000)
    for ax, axis in zip(axes, axes_names):
        group = [(p["x"], p["per_layer"], False) for p in pts.values() if p["axis"] == axis]
        if "base" in pts:  # its seed 0, like every other point, with the other seeds as dots
            group.append((base_x[axis], pts["base"]["per_layer"], True))
        group.sort(key=lambda t: t[0])
        for li, colour in ((0, "#1f77b4"), (1, "#2ca02c"), (3, "#d62728")):
            if not group:
                continue
            gx, acc, lo, hi = [], [], [], []
            for x, per, is_base in group:
                a = per[li]["acc_seeds"][0] if is_base else per[li]["acc"]
                ci = wilson_interval(a * n, n) if is_base else per[li]["acc_ci"]
                gx.append(x)
                acc.append(100 * a)
                lo.append(100 * (a - ci[0]))
                hi.append(100 * (ci[1] - a))
                if is_base:
                    ax.scatter([x] * 2, [100 * v for v in per[li]["acc_seeds"][1:]], s=10, color=colour, alpha=0.5)
            ax.errorbar(gx, acc, yerr=[lo, hi], fmt="o-", color=colour, capsize=3, label=labels[li])
        ax.set_xlabel(axis)
        ax.set_xticks(sorted({g[0] for g in group}))
    axes[0].set_ylabel("Acc_i (%)")
    axes[0].legend(fontsize=7)
    fig.suptitle("Acc_i against generator settings (10-epoch classifier, generator seed 0; bars: Wilson 95 %; "
                 "dots: the base point's seeds 1 and 2)",
                 fontsize=9)
    fig.tight_layout()
    paths.append(out_dir / "fidelity_settings.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    # 3. Where Acc_i comes from, base point: agreement on x, on x + noise, on x* (keeps), Acc_i
    if "base" in pts:
        per = pts["base"]["per_layer"]
        fig, ax = plt.subplots(figsize=(7, 3.4))
        series = [("agreement_natural", "agreement on x"), ("agreement_noisy", "agreement on x + ε·noise"),
                  ("keeps_adversarial_label", "agreement on x* (keeps f(x*))"), ("acc", "Acc_i"),
                  ("acc_at_natural_fidelity", "Acc_i at natural-image fidelity")]
        w = 0.8 / len(series)
        for j, (field, lab) in enumerate(series):
            ax.bar([x - 0.4 + (j + 0.5) * w for x in xs], [100 * r[field] for r in per], w, label=lab)
        ax.set_xticks(list(xs), labels)
        ax.set_ylabel("%")
        ax.set_title("Base point: the explanations' agreement with f, and Acc_i", fontsize=9)
        ax.legend(fontsize=7, loc="center right")
        fig.tight_layout()
        paths.append(out_dir / "fidelity_carry_over.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/fidelity")
    ap.add_argument("--points", default=",".join(POINTS), help="comma list of " + ", ".join(POINTS))
    ap.add_argument("--dstar-images", type=int, default=2000)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--figures", metavar="DIR", help="only draw the figures from <out>/study.json into DIR")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    out = Path(a.out)
    if a.figures:
        for p in figures(read_json(out / "study.json"), Path(a.figures)):
            print(p)
        return
    device = resolve_device(a.device)
    names = [n for n in a.points.split(",") if n]
    unknown = [n for n in names if n not in POINTS]
    if unknown:
        raise SystemExit(f"unknown point(s) {', '.join(unknown)}; known: {', '.join(POINTS)}")
    study_path = out / "study.json"
    study = read_json(study_path) if study_path.exists() else {"points": {}}
    for name in names:
        t0 = time.perf_counter()
        doc = run_point(out, name, POINTS[name], device, a.dstar_images)
        study["points"][name] = doc
        study["layer_labels"] = doc["layer_labels"]
        study["dstar_images"] = a.dstar_images
        study["paper_acc"] = PAPER_TABLE1["natural"]["acc"]  # Table 1, natural model (docs tables)
        write_json(study_path, study)
        log.info("%s: Acc_i %s (%.0f s)", name,
                 " ".join(f"{100 * r['acc']:.1f}" for r in doc["per_layer"]), time.perf_counter() - t0)
    print(json.dumps({n: [round(100 * r["acc"], 1) for r in d["per_layer"]] for n, d in study["points"].items()}))


if __name__ == "__main__":
    main()
