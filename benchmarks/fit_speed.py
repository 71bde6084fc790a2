"""Generator-fitting step speed: the per-layer reference step against the stacked step.

Times one joint step for the seven default SmallCNN layers (warm-up phase: L_I only; GAN
phase: D update + C/G update, lazy R1 every 4th step included) at the last scale, for the
quick and the paper-size G/D/C, with three step variants run side by side, alternating
rounds so that machine drift hits all of them alike:

* ``reference``: one bank (C, G, D) and one per-parameter Adam per layer, every loss read
  back to the host after every step (the pattern of a per-layer fit loop);
* ``fused``: the same banks, fused Adam, losses left on the device;
* ``stacked``: all layers' G and D as one stacked network, fused Adam, losses on the device
  (``FitConfig(stack_layers="on")``; the default "auto" picks it on a GPU, and on a CPU
  for G/D at most 64 channels wide).

    python benchmarks/fit_speed.py --device cpu
    python benchmarks/fit_speed.py --device cuda --steps 20 --rounds 5
    python benchmarks/fit_speed.py --device cpu --steps 8 --rounds 3 --configs quick:32 --json docs/fit_speed_quick.json

Prints a Markdown table: ms per step (median over rounds) and images/s per layer; ``--json``
also writes every round's ms per step, the command and the machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from interpretgan import models
from interpretgan.config import FIT_PRESETS
from interpretgan.devices import resolve_device
from interpretgan.fitting import GanBank, gan_step, make_optimizers, schedule, stacked
from interpretgan.gan import GAN_LOSSES
from interpretgan.layers import capture, default_layers
from interpretgan.precision import use_amp

from _record import machine, spread, write

VARIANTS = {"reference": ("off", "loop", True), "fused": ("off", "fused", False),
            "stacked": ("on", "fused", False)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_runner(variant: str, preset: str, batch: int, warmup: bool, device: torch.device,
                amp: bool | None = None, widths: tuple[int, ...] | None = None, layers: list[str] | None = None):
    """A closure running one step of ``variant``; the setup (classifier, banks, batch) is fixed.
    ``amp``: bf16 autocast inside the step (None: the preset's setting on ``device``); ``widths``:
    G's and D's channels per scale (None: the preset's); ``layers``: None for the default seven."""
    group, adam, sync = VARIANTS[variant]
    cfg = dataclasses.replace(FIT_PRESETS.get(preset), batch_size=batch, stack_layers=group, adam=adam)
    if widths:
        cfg = dataclasses.replace(cfg, g_channels=tuple(widths), d_channels=tuple(widths))
    torch.manual_seed(0)
    f = models.create("smallcnn").to(device).eval()
    torch.nn.init.normal_(f.classifier.fc3.weight, std=0.1)
    for p in f.parameters():
        p.requires_grad_(False)
    names = layers or default_layers(f)
    x = torch.rand(batch, 1, 32, 32, device=device)
    with torch.no_grad():
        feats = capture(f, x, names)
        target = f(x).argmax(1)
    members = [(n, feats[n].shape[1:]) for n in names]
    banks = [GanBank.build(members, 1, cfg).to(device)] if group == "on" else \
        [GanBank.build([m], 1, cfg).to(device) for m in members]
    opts = [make_optimizers(b, cfg) for b in banks]
    loss_fn = GAN_LOSSES.get(cfg.gan_loss)()
    amp = use_amp(cfg.amp, device) if amp is None else amp
    last = len(cfg.steps_per_scale) - 1
    start = sum(cfg.steps_per_scale[:last]) + cfg.steps_per_scale[last] // 2  # last scale, faded in
    step = {"i": 0}

    def run_one():
        phase = dataclasses.replace(schedule(cfg, start + step["i"]), warmup=warmup)
        step["i"] += 1
        stats = gan_step(banks, f, loss_fn, opts, feats, x, target, phase, cfg.lam, 32, amp=amp)
        if sync:
            for st in stats:
                for v in st.values():
                    v.tolist()
    return run_one, len(names)


def time_rounds(runners: dict, rounds: int, steps: int, device: torch.device) -> dict[str, list[float]]:
    """ms per step of each runner in each round, the runners alternated within a round."""
    times: dict[str, list[float]] = {v: [] for v in runners}
    for v, (fn, _) in runners.items():  # warm up kernels and allocator
        for _ in range(4):
            fn()
    for _ in range(rounds):
        for v, (fn, _) in runners.items():
            _sync(device)
            t = time.perf_counter()
            for _ in range(steps):
                fn()
            _sync(device)
            times[v].append((time.perf_counter() - t) / steps * 1000)
    return times


def measure(a: argparse.Namespace, device: torch.device) -> list[dict]:
    """Every config × G/D widths × phase: the variants' ms per step in alternated rounds."""
    rows = []
    widths = [tuple(int(c) for c in w.split("-")) for w in a.gd_widths.split(",")] if a.gd_widths else [None]
    layers = a.layers.split(",") if a.layers else None
    for item in a.configs.split(","):
        preset, batch = item.split(":")
        for wid in widths:
            for warmup in (True, False):
                runners = {v: make_runner(v, preset, int(batch), warmup, device, widths=wid, layers=layers)
                           for v in a.variants.split(",")}
                times = time_rounds(runners, a.rounds, a.steps, device)
                cfg = FIT_PRESETS.get(preset)
                auto = stacked(dataclasses.replace(cfg, g_channels=wid, d_channels=wid) if wid else cfg, device)
                ref = times[next(iter(runners))]
                for v in runners:
                    rows.append({"preset": preset, "batch": int(batch), "gd_widths": wid,
                                 "phase": "warm-up" if warmup else "GAN", "variant": v,
                                 "auto": v != "reference" and (v == "stacked") == auto, "layers": runners[v][1],
                                 "ms": spread(times[v]), "vs_reference": [r / t for r, t in zip(ref, times[v])]})
                    print_row(rows[-1])
    return rows


def print_row(r: dict) -> None:
    ms = r["ms"]["median"]
    wid = f", G/D {'-'.join(map(str, r['gd_widths']))}" if r["gd_widths"] else ""
    print(f"| {r['preset']}, batch {r['batch']}{wid} | {r['phase']} | {r['variant']}{' (auto)' if r['auto'] else ''} "
          f"| {ms:.1f} | {r['batch'] / ms * 1000:.0f} | {statistics.median(r['vs_reference']):.2f}x |", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per round (a multiple of 4: R1 every 4th)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--configs", default="quick:32,paper:64", help="preset:batch,…")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="the first is the reference of the speed column")
    ap.add_argument("--gd-widths", help="G's and D's channels per scale instead of the preset's: 64-64-32-16,…")
    ap.add_argument("--layers", help="SmallCNN layers to fit (default: the seven default layers)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch's default)")
    ap.add_argument("--json", help="also write every round's times, the command and the machine here")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    started = machine()
    device = resolve_device(a.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}"
    print(f"device: {device} ({name}); torch {torch.__version__}; bf16 autocast: {use_amp('auto', device)}")
    print(f"{a.steps} steps x {a.rounds} alternating rounds, median ms per step\n")
    print("| config | phase | variant | ms / step | images/s per layer | vs reference |")
    print("|---|---|---|---:|---:|---:|")
    rows = measure(a, device)
    write(a.json, {"device": str(device), "bf16": use_amp("auto", device), "steps": a.steps,
                   "rounds": a.rounds, "rows": rows}, started)


if __name__ == "__main__":
    main()
