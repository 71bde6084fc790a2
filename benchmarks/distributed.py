"""Ranks against threads: the same work on 1 process × T threads and on N processes × T/N
threads (or, on a GPU machine, 1 GPU against N GPUs), run side by side in alternating rounds.

* **fit**: the quick preset's generators for the seven default SmallCNN layers (its
  schedule scaled by ``--fit-scale``), on a SmallCNN with random weights and random
  images: the 1-process fit stacks all seven layers, each rank fits its share.
* **natural** / **atta-trades**: one training epoch of the SmallCNN on ``--train-images``
  MNIST images (batch 128); the step time is the epoch's ``train_s`` (rank 0's, waits on
  the all-reduce included), and the final weights are compared with those of 1 process × 1
  thread, which runs every operation as each rank does (largest absolute difference: the float
  tolerance of data-parallel training; the 2-thread process shows what a thread count alone
  changes).

Every run is a fresh set of processes (start-up counted in "wall s", not in "work s"). On the
CPU, 1 process × 1 thread runs too: the per-core baseline (on a machine with other work on
its cores, two threads of one process can be much slower than one).

    python benchmarks/distributed.py                       # CPU: 1×2 threads vs 2×1 thread
    python benchmarks/distributed.py --device cuda --ranks 8   # GPU machine: 1 vs 8 GPUs

Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from interpretgan import distributed, models
from interpretgan.config import FIT_PRESETS, DataConfig, TrainConfig
from interpretgan.data import ImageDataset
from interpretgan.fitting import fit_generators
from interpretgan.layers import default_layers
from interpretgan.runs import load_checkpoint, read_jsonl
from interpretgan.training import train_classifier


def _threads(n: int) -> None:
    if n:
        torch.set_num_threads(n)


def fit_job(out: str, scale: float, device: str, threads: int, result: str) -> None:
    """One fit (on every rank of the world this process is in); rank 0 writes the time."""
    with distributed.process_group(device) as world:
        _threads(threads)
        cfg = FIT_PRESETS.get("quick")
        cfg = dataclasses.replace(cfg, steps_per_scale=tuple(max(1, round(s * scale)) for s in cfg.steps_per_scale),
                                  ckpt_every=10 ** 6, eval_images=64)
        torch.manual_seed(0)
        f = models.create("smallcnn").to(world.device).eval()
        torch.nn.init.normal_(f.classifier.fc3.weight, std=0.1)
        g = torch.Generator().manual_seed(0)
        ds = ImageDataset((torch.rand(2048, 1, 32, 32, generator=g) * 255).to(torch.uint8), torch.arange(2048) % 10)
        ex = ds.images[:64].float() / 255
        world.wait_all("bench-start")
        t0 = time.perf_counter()
        fit_generators(f, ds, ex, cfg, out, default_layers(f), progress=False, world=world)
        world.wait_all("bench-done")
        if world.main:
            Path(result).write_text(json.dumps({"work_s": time.perf_counter() - t0}))


def train_job(method: str, images: int, run: str, device: str, threads: int, result: str) -> None:
    with distributed.process_group(device) as world:
        _threads(threads)
        cfg = TrainConfig(data=DataConfig(train_subset=images, test_subset=200), method=method, epochs=1,
                          batch_size=128, lr=0.05, lr_milestones=(), seed=0)
        train_classifier(cfg, run, progress=False, device=world.device, world=world)
        if world.main:
            Path(result).write_text(json.dumps({"work_s": read_jsonl(Path(run) / "metrics.jsonl")[-1]["train_s"]}))


def one_run(job, ranks: int, args: tuple, tmp: Path, tag: str) -> dict:
    result = tmp / f"{tag}.json"
    t0 = time.perf_counter()
    distributed.spawn(ranks, job, *args, str(result))
    return {**json.loads(result.read_text()), "wall_s": time.perf_counter() - t0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="CPU threads of the 1-process run (split among the ranks)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--fit-scale", type=float, default=0.1, help="share of the quick preset's 480 steps")
    p.add_argument("--train-images", type=int, default=6000)
    p.add_argument("--jobs", default="fit,natural,atta-trades")
    a = p.parse_args(argv)
    cpu = a.device == "cpu"
    # name → (processes, threads each); on the CPU also 1 process × 1 thread, the per-core baseline
    setups = {"1": (1, a.threads if cpu else 0), str(a.ranks): (a.ranks, max(1, a.threads // a.ranks) if cpu else 0)}
    if cpu and a.threads > 1:
        setups["1x1"] = (1, 1)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for job in a.jobs.split(","):
            times: dict[str, list[dict]] = {k: [] for k in setups}
            for rnd in range(a.rounds):
                for name, (ranks, threads) in setups.items():
                    tag = f"{job}-{name}-{rnd}"
                    if job == "fit":
                        args = (str(tmp / tag), a.fit_scale, a.device, threads)
                        times[name].append(one_run(fit_job, ranks, args, tmp, tag))
                    else:
                        args = (job, a.train_images, str(tmp / tag), a.device, threads)
                        times[name].append(one_run(train_job, ranks, args, tmp, tag))
                    print(f"{tag}: {times[name][-1]}", file=sys.stderr, flush=True)
            diff = None
            diffs = {}
            if job != "fit":  # the last round's models against the 1-process one
                w = {n: load_checkpoint(tmp / f"{job}-{n}-{a.rounds - 1}" / "checkpoints" / "final.pt")["state_dict"]
                     for n in setups}
                ref = "1x1" if "1x1" in setups else "1"  # the same threads per process as the ranks
                diffs = {n: max((w[ref][k] - w[n][k]).abs().max().item() for k in w[ref])
                         for n in setups if n != ref}
            base = {n: statistics.median(t["work_s"] for t in times[n]) for n in setups}
            for name, (ranks, threads) in setups.items():
                wall = statistics.median(t["wall_s"] for t in times[name])
                rows.append((job, f"{ranks} × {threads} thread(s)" if cpu else f"{ranks} GPU(s)", base[name],
                             wall, base["1"] / base[name], base.get("1x1", base["1"]) / base[name], diffs.get(name)))
    print("| job | processes | work s | wall s | speed vs 1 process | speed vs 1 × 1 thread | max \\|Δw\\| vs 1 × 1 thread |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for job, proc, work, wall, speed, per_core, diff in rows:
        print(f"| {job} | {proc} | {work:.1f} | {wall:.1f} | {speed:.2f}× | {per_core:.2f}× | "
              f"{'' if diff is None else f'{diff:.1e}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
