"""InterpretGAN fitting with each registered GAN loss (or any other FitConfig variants), side
by side in one run on the same classifier, layers, data and seed.

    python benchmarks/gan_losses.py --checkpoint RUN/natural/checkpoints/final.pt \
        --layers feature_extractor.relu1,feature_extractor.pool1,feature_extractor.relu3
    python benchmarks/gan_losses.py --checkpoint … --layers … \
        --variant "without EMA: ema_beta=0" --variant "with EMA: ema_beta=0.98"

Prints, per variant and layer: agreement on up to 1,000 held-out test images outside D*, KID
against other held-out images, and the fitting wall time. ``--set k=v`` changes the base quick
preset; ``--variant "NAME: k=v k=v"`` (repeatable) fits named variants of it instead of one per
GAN loss. ``--json PATH`` also writes them, each variant's running agreement on 200 held-out
images as the fit went (its ``metrics.jsonl``), the fit settings, the command and the machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import torch

from interpretgan.config import FIT_PRESETS, RunConfig, merge, parse_assignments
from interpretgan.data import checkpoint_data_config, load_split
from interpretgan.diagnosis.diagnose import dstar_indices
from interpretgan.fitting import fit_and_summarize
from interpretgan.gan import GAN_LOSSES
from interpretgan.models import load_classifier
from interpretgan.runs import read_jsonl

from _record import machine, write


def variants(a: argparse.Namespace) -> dict[str, dict]:
    """Name → overrides of the base preset: the ``--variant`` items, else one per GAN loss."""
    if not a.variant:
        return {loss: {"gan_loss": loss} for loss in a.losses.split(",")}
    out = {}
    for item in a.variant:
        name, _, assigns = item.partition(":")
        out[name.strip()] = parse_assignments(assigns.split())
    return out


def curve(fit_dir: str, layers: list[str]) -> list[dict]:
    """The fit's running agreement on 200 held-out images at each logged step."""
    return [{"step": r["step"], "warmup": r["warmup"], **{n: r[f"{n}/agreement200"] for n in layers}}
            for r in read_jsonl(Path(fit_dir) / "metrics.jsonl")]


def print_table(rows: dict, layers: list[str]) -> None:
    print(f"{'layer':28s}" + "".join(f"{name:>24s}" for name in rows))
    for n in layers:
        print(f"{n:28s}" + "".join(f"   agree {r['layers'][n]['agreement']:.3f} KID {r['layers'][n]['kid']:.4f}"
                                   for r in rows.values()))
    print(f"{'seconds':28s}" + "".join(f"{r['fit_seconds']:>24.0f}" for r in rows.values()))
    print(f"KID real vs real: {next(iter(rows.values()))['kid_real_vs_real']:.4f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--layers", required=True)
    p.add_argument("--losses", default=",".join(GAN_LOSSES.names()))
    p.add_argument("--variant", action="append", default=[], help='"NAME: KEY=VALUE KEY=VALUE" (repeatable)')
    p.add_argument("--set", action="append", default=[], help="base preset override, KEY=VALUE")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", help="also write every variant's numbers, the command and the machine here")
    a = p.parse_args()
    started = machine()
    if a.threads:
        torch.set_num_threads(a.threads)
    clf = load_classifier(a.checkpoint)
    data = checkpoint_data_config(a.checkpoint)
    dstar = dstar_indices(load_split(data, "test"), RunConfig().dstar_images)
    base = merge(FIT_PRESETS.get("quick"), parse_assignments(a.set))
    layers = a.layers.split(",")
    rows, changes = {}, variants(a)
    for name, change in changes.items():
        with tempfile.TemporaryDirectory() as d:
            s = fit_and_summarize(clf, data, merge(base, change), d, layers, dstar_indices=dstar, progress=False)
            s["curve"] = curve(d, layers)
        rows[name] = s
        print(json.dumps({"variant": name, "seconds": round(s["fit_seconds"]),
                          **{n: {k: round(v, 4) for k, v in r.items()} for n, r in s["layers"].items()}}),
              flush=True)
    print_table(rows, layers)
    write(a.json, {"checkpoint": a.checkpoint, "layers": layers, "fit": dataclasses.asdict(base),
                   "kid_real_vs_real": next(iter(rows.values()))["kid_real_vs_real"],
                   "variants": {name: {"changes": changes[name], "fit_seconds": r["fit_seconds"],
                                       "layers": r["layers"], "curve": r["curve"]}
                                for name, r in rows.items()}}, started)


if __name__ == "__main__":
    main()
