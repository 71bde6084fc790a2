"""A ViT-B/16-shaped token layer (197 tokens × 768 at 224 px): the compression network C read
as a token grid (14×14 patches as a (768, 14, 14) map by the Table 4/5 rule, the CLS token
joining at the FC) against C read flat (one FC over 197·768 inputs).

Per reading and fit preset (quick: code 128; paper: code 512; both at Tables 4/5's widths unless
``--c-width-mult`` scales C's conv widths):
C's weights, and one fit step's time and peak memory at batch 32 — the member's C, G and D
(the preset's G/D at 32 px) updated by :func:`interpretgan.fitting.gan_step` through a small
stand-in classifier on 32-px RGB images (a ViT-B/16 forward on the CPU would swamp what C
costs; G, D and the classifier are the same for both readings, so the difference is C's).
Each variant runs in its own process: peak memory is that process's peak RSS
(``resource.getrusage``, which counts the CPU allocator's memory) above its RSS once the
inputs were built, and the time the median of ``--steps`` steps after one warm-up step.

    python benchmarks/token_layers.py                       # Markdown table
    python benchmarks/token_layers.py --c-width-mult 0.5    # C at half widths
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn

from interpretgan.config import FIT_PRESETS
from interpretgan.fitting import GanBank, gan_step, make_optimizers, schedule
from interpretgan.gan import GAN_LOSSES

SHAPE = (197, 768)  # ViT-B/16 at 224 px: CLS + 14×14 patches of 768 features
READINGS = {"grid": "auto", "flat": "flat"}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def stand_in_classifier() -> nn.Module:
    """A small CNN on 32-px RGB images (x̂ goes through it for L_I): 3 → 4 classes."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4)).eval()


def measure(reading: str, preset: str, steps: int, batch: int, width: float | None = None) -> dict:
    """One variant in this process: C's weights, step time (median) and peak RSS growth."""
    torch.manual_seed(0)
    cfg = dataclasses.replace(FIT_PRESETS.get(preset), tokens=READINGS[reading], batch_size=batch,
                              amp="off", g_channels=FIT_PRESETS.get(preset).g_channels[:4],
                              d_channels=FIT_PRESETS.get(preset).d_channels[:4])
    if width is not None:
        cfg = dataclasses.replace(cfg, c_width_mult=width)
    f = stand_in_classifier()
    for p in f.parameters():
        p.requires_grad_(False)
    feats = {"token_layer": torch.randn(batch, *SHAPE)}
    real = torch.rand(batch, 3, 32, 32)
    target = torch.randint(0, 4, (batch,))
    base = _rss_mb()
    bank = GanBank.build([("token_layer", SHAPE)], 3, cfg)
    c_weights = sum(p.numel() for p in bank.Cs[0].parameters())
    opts = [make_optimizers(bank, cfg)]
    loss = GAN_LOSSES.get(cfg.gan_loss)()
    total = sum(cfg.steps_per_scale)
    phase = dataclasses.replace(schedule(cfg, total - 1), warmup=False)  # last scale, D updated too
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        gan_step([bank], f, loss, opts, feats, real, target, dataclasses.replace(phase, step=i + 1),
                 cfg.lam, 32)
        times.append(time.perf_counter() - t0)
    return {"reading": reading, "preset": preset, "c_weights": c_weights,
            "c_plan": bank.Cs[0].plan, "step_s": statistics.median(times[1:]),
            "peak_rss_mb": _rss_mb() - base, "batch": batch,
            "threads": torch.get_num_threads(), "c_width_mult": cfg.c_width_mult}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="quick,paper")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--c-width-mult", type=float, help="scale C's conv widths (default: the preset's)")
    p.add_argument("--one", help=argparse.SUPPRESS)  # "reading,preset": measure in this process
    a = p.parse_args(argv)
    if a.one:
        reading, preset = a.one.split(",")
        print(json.dumps(measure(reading, preset, a.steps, a.batch, a.c_width_mult)))
        return 0
    rows = []
    for preset in a.presets.split(","):
        for reading in READINGS:
            width = [] if a.c_width_mult is None else ["--c-width-mult", str(a.c_width_mult)]
            out = subprocess.run([sys.executable, __file__, "--one", f"{reading},{preset}", "--steps",
                                  str(a.steps), "--batch", str(a.batch), *width], check=True,
                                 capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"token layer {SHAPE[0]} × {SHAPE[1]}, batch {a.batch}, {rows[0]['threads']} threads, "
          f"median of {a.steps} steps\n")
    print("| preset | C reads the layer as | C weights | conv stages | fit step (s) | peak RSS growth (MB) |")
    print("|---|---|---:|---|---:|---:|")
    for r in rows:
        what = "token grid 14×14 + CLS" if r["reading"] == "grid" else "flat (one FC)"
        print(f"| {r['preset']} | {what} | {r['c_weights'] / 1e6:.2f} M | {r['c_plan'] or '—'} | "
              f"{r['step_s']:.3f} | {r['peak_rss_mb']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
