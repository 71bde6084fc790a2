"""One token layer fitted alone, read as a grid and as one flat FC: does the reading decide
whether its generator learns?

Needs the model and folder of ``benchmarks/everyday_models.py`` (run it first). Fits one
generator seed of ``--layer`` of the trained ViT with the quick preset (agreement floor off),
once per reading and schedule, and keeps the running agreement on 200 held-out test images
(drawn balanced by class) that ``fit/metrics.jsonl`` logs every 20 steps.

    python benchmarks/token_reading.py --layer embed --json docs/token_reading.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path

import torch

from interpretgan.config import FIT_PRESETS, DataConfig
from interpretgan.data import balanced_order, dataset_labels, images_at, load_split
from interpretgan.fitting import fit_generators
from interpretgan.loading import load_model_file
from interpretgan.models import with_normalization
from interpretgan.runs import read_jsonl

REPO = Path(__file__).resolve().parent.parent
QUICK = FIT_PRESETS.get("quick")
# (reading, steps at the last scale): the quick schedule, and twice its steps for the flat FC
VARIANTS = {"grid": ("auto", QUICK.steps_per_scale),
            "flat": ("flat", QUICK.steps_per_scale),
            "flat-x2": ("flat", (*QUICK.steps_per_scale[:-1], QUICK.steps_per_scale[-1] + sum(QUICK.steps_per_scale)))}


def fit_one(net, train, eval_x, layer: str, tokens: str, steps: tuple[int, ...], out: Path) -> dict:
    """Fit seed 0 of ``layer`` alone; its running agreement per logged step and the seconds."""
    cfg = dataclasses.replace(QUICK, tokens=tokens, steps_per_scale=steps, generator_seeds=(0,),
                              min_agreement=0.0)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    fit_generators(net, train, eval_x, cfg, out, [layer], progress=False, log_every=20)
    curve = {r["step"]: r[f"{layer}/agreement200"] for r in read_jsonl(out / "metrics.jsonl")
             if f"{layer}/agreement200" in r}
    return {"tokens": tokens, "steps_per_scale": list(steps), "seconds": time.perf_counter() - t0,
            "agreement200": curve, "final": curve[max(curve)]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--everyday", type=Path, default=Path("runs/everyday"), help="everyday_models.py's --out")
    p.add_argument("--layer", default="embed")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    record = json.loads((a.everyday / "run_vit" / "config.json").read_text())["run"]
    net = load_model_file(str(REPO / "examples" / "vit.py") + ":build")
    net.load_state_dict(torch.load(a.everyday / "vit.pt"))
    net = with_normalization(net, record["normalize"]).eval()
    data = DataConfig(dataset="folder", data_dir=str(a.everyday / "folder"))
    train, test = load_split(data, "train"), load_split(data, "test")
    eval_x, _ = images_at(test, balanced_order(dataset_labels(test), seed=0)[:200])
    rows = {name: fit_one(net, train, eval_x, a.layer, *VARIANTS[name], a.everyday / f"token_reading_{name}")
            for name in a.variants.split(",")}
    for name, r in rows.items():
        print(f"{name:8s} {sum(r['steps_per_scale'])} steps  agreement {r['final']:.3f}  ({r['seconds']:.0f} s)")
    if a.json:
        a.json.write_text(json.dumps({"layer": a.layer, "model": "examples/vit.py", "torch": torch.__version__,
                                      "machine": "2-core AVX-512-BF16 CPU", "variants": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
