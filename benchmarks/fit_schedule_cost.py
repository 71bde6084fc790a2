"""What the quick fit's schedule and compression widths cost: one fit's step time, from
alternated step timings.

    python benchmarks/fit_schedule_cost.py --device cpu --rounds 3 --steps 4

A fit's steps are of eight kinds: four scales, each in the L_I-only warm-up (no D update) or in
the GAN phase. For each compression width (the quick preset's ``c_width_mult`` 0.5 and Tables
4/5's 1.0) this times every kind as the main job runs it (the seven default SmallCNN layers × two
generator seeds as one stacked bank, batch 32, the preset's precision), in rounds that alternate
the widths and the kinds, so that the machine's drift hits all alike; then it adds up each
schedule's steps: per scale, its warm-up steps (:func:`~interpretgan.fitting.warmup_steps`) ×
the warm-up time + the rest × the GAN time.

Prints the median ms per step of each kind and width, and per schedule the fit's step time
(seconds) and its ratio to the former quick fit (40 % warm-up over the first share of all steps,
half-width compression networks). Step time only: the realism network, the summary and the
checkpoints are not counted.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from interpretgan import models
from interpretgan.config import RUN_PRESETS, resolve_run
from interpretgan.devices import resolve_device
from interpretgan.fitting import (GanBank, gan_step, make_optimizers, member_key, schedule, split_member, stacked,
                                  warmup_steps)
from interpretgan.gan import GAN_LOSSES
from interpretgan.layers import capture, default_layers
from interpretgan.precision import use_amp

QUICK = resolve_run(RUN_PRESETS.get("quick")).fit  # the main job's fit settings
SCHEDULES = {
    "former quick (warm-up over all steps, width 0.5)": dataclasses.replace(
        QUICK, warmup_each_scale=False, c_width_mult=0.5),
    "progressive (warm-up in each scale), width 0.5": dataclasses.replace(
        QUICK, warmup_each_scale=True, c_width_mult=0.5),
    "progressive, Tables 4/5 widths (1.0)": dataclasses.replace(QUICK, warmup_each_scale=True, c_width_mult=1.0),
}


def make_runner(cfg, scale: int, warmup: bool, device: torch.device):
    """A closure running one fit step of ``cfg`` at ``scale`` (warm-up or GAN phase)."""
    torch.manual_seed(0)
    f = models.create("smallcnn").to(device).eval()
    for p in f.parameters():
        p.requires_grad_(False)
    names = default_layers(f)
    x = torch.rand(cfg.batch_size, 1, 32, 32, device=device)
    with torch.no_grad():
        feats = capture(f, x, names)
        target = f(x).argmax(1)
    keys = [member_key(n, g) for n in names for g in cfg.generator_seeds]
    members = [(k, feats[split_member(k)[0]].shape[1:]) for k in keys]
    feats = {k: feats[split_member(k)[0]] for k in keys}
    parts = [GanBank.build([m], 1, cfg) for m in members]
    banks = [GanBank.stack(parts).to(device)] if stacked(cfg, device) else [p.to(device) for p in parts]
    opts = [make_optimizers(b, cfg) for b in banks]
    loss_fn = GAN_LOSSES.get(cfg.gan_loss)()
    amp = use_amp(cfg.amp, device)
    start = sum(cfg.steps_per_scale[:scale]) + cfg.steps_per_scale[scale] - 1  # faded in
    step = {"i": 0}

    def run_one():
        phase = dataclasses.replace(schedule(cfg, start), warmup=warmup, step=step["i"])
        step["i"] += 1
        gan_step(banks, f, loss_fn, opts, feats, x, target, phase, cfg.lam, 32, amp=amp)
    return run_one


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per round (a multiple of 4: R1 every 4th)")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    device = resolve_device(a.device)
    widths = sorted({c.c_width_mult for c in SCHEDULES.values()})
    kinds = [(w, s, warm) for s in range(len(QUICK.steps_per_scale)) for warm in (True, False) for w in widths]
    runners = {k: make_runner(dataclasses.replace(QUICK, c_width_mult=k[0]), k[1], k[2], device) for k in kinds}
    for fn in runners.values():  # warm up kernels and allocator
        fn()
    ms: dict[tuple, list[float]] = {k: [] for k in kinds}
    for r in range(a.rounds):
        for k in (kinds if r % 2 == 0 else kinds[::-1]):
            t = time.perf_counter()
            for _ in range(a.steps):
                runners[k]()
            ms[k].append((time.perf_counter() - t) / a.steps * 1000)
    med = {k: statistics.median(v) for k, v in ms.items()}
    print(f"device {device}, {len(QUICK.generator_seeds)} generator seeds × 7 layers, batch {QUICK.batch_size}, "
          f"bf16 autocast: {use_amp(QUICK.amp, device)}; {a.rounds} alternating rounds of {a.steps} steps\n")
    print("| scale | phase | " + " | ".join(f"width {w}: ms / step [range]" for w in widths) + " |")
    print("|---|---|" + "---:|" * len(widths))
    for s in range(len(QUICK.steps_per_scale)):
        for warm in (True, False):
            cells = [f"{med[(w, s, warm)]:.0f} [{min(ms[(w, s, warm)]):.0f}, {max(ms[(w, s, warm)]):.0f}]" for w in widths]
            print(f"| {s} ({4 * 2 ** s} px) | {'warm-up' if warm else 'GAN'} | " + " | ".join(cells) + " |")
    print("\n| schedule | warm-up steps per scale | fit step time (s) | vs former quick |")
    print("|---|---|---:|---:|")
    base = None
    for name, cfg in SCHEDULES.items():
        warm = warmup_steps(cfg)
        secs = sum(w * med[(cfg.c_width_mult, s, True)] + (n - w) * med[(cfg.c_width_mult, s, False)]
                   for s, (n, w) in enumerate(zip(cfg.steps_per_scale, warm))) / 1000
        base = base or secs
        print(f"| {name} | {warm} | {secs:.0f} | {secs / base:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
