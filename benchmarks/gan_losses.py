"""InterpretGAN fitting with each registered GAN loss (or any other FitConfig variants), side
by side in one run on the same classifier, layers, data and seed.

    python benchmarks/gan_losses.py --checkpoint RUN/natural/checkpoints/final.pt \
        --layers feature_extractor.relu1,feature_extractor.pool1,feature_extractor.relu3

Prints, per variant and layer: agreement on up to 1,000 held-out test images outside D*, KID
against other held-out images, and the fitting wall time. ``--set k=v`` changes the base quick preset.
"""
from __future__ import annotations

import argparse
import json
import tempfile

import torch

from interpretgan.config import FIT_PRESETS, RunConfig, merge, parse_assignments
from interpretgan.data import checkpoint_data_config, load_split
from interpretgan.diagnosis.diagnose import dstar_indices
from interpretgan.fitting import fit_and_summarize
from interpretgan.gan import GAN_LOSSES
from interpretgan.models import load_classifier


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--layers", required=True)
    p.add_argument("--losses", default=",".join(GAN_LOSSES.names()))
    p.add_argument("--set", action="append", default=[], help="base preset override, KEY=VALUE")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    clf = load_classifier(a.checkpoint)
    data = checkpoint_data_config(a.checkpoint)
    dstar = dstar_indices(load_split(data, "test"), RunConfig().dstar_images)
    base = merge(FIT_PRESETS.get("quick"), parse_assignments(a.set))
    layers = a.layers.split(",")
    rows = {}
    for loss in a.losses.split(","):
        cfg = merge(base, {"gan_loss": loss})
        with tempfile.TemporaryDirectory() as d:
            s = fit_and_summarize(clf, data, cfg, d, layers, dstar_indices=dstar, progress=False)
        secs = s["fit_seconds"]
        rows[loss] = s
        print(json.dumps({"loss": loss, "seconds": round(secs),
                          **{n: {k: round(v, 4) for k, v in r.items()} for n, r in s["layers"].items()}}),
              flush=True)
    print(f"{'layer':28s}" + "".join(f"{loss:>24s}" for loss in rows))
    for n in layers:
        print(f"{n:28s}" + "".join(f"   agree {r['layers'][n]['agreement']:.3f} KID {r['layers'][n]['kid']:.4f}"
                                   for r in rows.values()))
    print(f"{'seconds':28s}" + "".join(f"{r['fit_seconds']:>24.0f}" for r in rows.values()))
    print(f"KID real vs real: {next(iter(rows.values()))['kid_real_vs_real']:.4f}")


if __name__ == "__main__":
    main()
