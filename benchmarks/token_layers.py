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
    python benchmarks/token_layers.py --presets quick:0.5,paper --json docs/token_layers_speed.json
    python benchmarks/token_layers.py --counts --json docs/token_layers.json   # C's weights only

``--presets`` takes ``preset[:c_width_mult]`` items. ``--counts`` builds C alone on the meta
device (no time, no memory) for the quick and paper presets, read as a grid and flat, and the
quick preset's grid with C at half width.
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

from _record import machine, write

SHAPE = (197, 768)  # ViT-B/16 at 224 px: CLS + 14×14 patches of 768 features
READINGS = {"grid": "auto", "flat": "flat"}
COUNTS = [("quick", "grid", None), ("quick", "flat", None), ("quick", "grid", 0.5),
          ("paper", "grid", None), ("paper", "flat", None)]  # (preset, reading, c_width_mult)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def stand_in_classifier() -> nn.Module:
    """A small CNN on 32-px RGB images (x̂ goes through it for L_I): 3 → 4 classes."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 4)).eval()


def config(reading: str, preset: str, batch: int = 32, width: float | None = None):
    """The preset's fit config with the reading, batch, fp32 and the G/D of its first four scales
    (32 px); C's widths scaled by ``width`` when given."""
    cfg = dataclasses.replace(FIT_PRESETS.get(preset), tokens=READINGS[reading], batch_size=batch,
                              amp="off", g_channels=FIT_PRESETS.get(preset).g_channels[:4],
                              d_channels=FIT_PRESETS.get(preset).d_channels[:4])
    return cfg if width is None else dataclasses.replace(cfg, c_width_mult=width)


def count(reading: str, preset: str, width: float | None) -> dict:
    """C's weights and conv stages as the fit builds it, on the meta device."""
    cfg = config(reading, preset, width=width)
    bank = GanBank.empty([("token_layer", SHAPE)], 3, cfg, device="meta")
    return {"preset": preset, "reading": reading, "c_width_mult": cfg.c_width_mult,
            "c_width_mult_set": width is not None, "code_dim": cfg.code_dim,
            "c_weights": sum(p.numel() for p in bank.Cs[0].parameters()), "c_plan": bank.Cs[0].plan}


def measure(reading: str, preset: str, steps: int, batch: int, width: float | None = None) -> dict:
    """One variant in this process: C's weights, step time (median) and peak RSS growth."""
    torch.manual_seed(0)
    cfg = config(reading, preset, batch, width)
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
            "c_plan": bank.Cs[0].plan, "step_s": statistics.median(times[1:]), "step_s_all": times[1:],
            "peak_rss_mb": _rss_mb() - base, "batch": batch,
            "threads": torch.get_num_threads(), "c_width_mult": cfg.c_width_mult,
            "c_width_mult_set": width is not None}


def _variant(item: str, width: float | None) -> tuple[str, float | None]:
    """``preset[:c_width_mult]`` → (preset, width); ``width`` when the item names none."""
    preset, _, w = item.partition(":")
    return preset, float(w) if w else width


def measure_all(items: list[tuple[str, float | None]], steps: int, batch: int) -> list[dict]:
    """Every (preset, width) × reading, each in its own process."""
    rows = []
    for preset, width in items:
        for reading in READINGS:
            extra = [] if width is None else ["--c-width-mult", str(width)]
            out = subprocess.run([sys.executable, __file__, "--one", f"{reading},{preset}", "--steps",
                                  str(steps), "--batch", str(batch), *extra], check=True,
                                 capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


def print_table(rows: list[dict], steps: int, batch: int) -> None:
    print(f"token layer {SHAPE[0]} × {SHAPE[1]}, batch {batch}, {rows[0]['threads']} threads, "
          f"median of {steps} steps\n")
    print("| preset | C reads the layer as | C weights | conv stages | fit step (s) | peak RSS growth (MB) |")
    print("|---|---|---:|---|---:|---:|")
    for r in rows:
        what = "token grid 14×14 + CLS" if r["reading"] == "grid" else "flat (one FC)"
        print(f"| {r['preset']} | {what} | {r['c_weights'] / 1e6:.2f} M | {r['c_plan'] or '—'} | "
              f"{r['step_s']:.3f} | {r['peak_rss_mb']:.0f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", default="quick,paper", help="preset[:c_width_mult],…")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--c-width-mult", type=float, help="scale C's conv widths (default: the preset's)")
    p.add_argument("--counts", action="store_true", help="only C's weights (meta device, no timing)")
    p.add_argument("--json", help="also write the rows, the command and the machine here")
    p.add_argument("--one", help=argparse.SUPPRESS)  # "reading,preset": measure in this process
    a = p.parse_args(argv)
    if a.one:
        reading, preset = a.one.split(",")
        print(json.dumps(measure(reading, preset, a.steps, a.batch, a.c_width_mult)))
        return 0
    started = machine()
    if a.counts:
        rows = [count(reading, preset, width) for preset, reading, width in COUNTS]
        print(json.dumps(rows, indent=2))
        write(a.json, {"shape": list(SHAPE), "rows": rows}, started)
        return 0
    items = [_variant(item, a.c_width_mult) for item in a.presets.split(",")]
    rows = measure_all(items, a.steps, a.batch)
    print_table(rows, a.steps, a.batch)
    write(a.json, {"shape": list(SHAPE), "steps": a.steps, "batch": a.batch, "warm_up_steps": 1,
                   "precision": "fp32", "rows": rows}, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
