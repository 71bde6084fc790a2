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

    python benchmarks/distributed.py --rounds 2 --fit-scale 0.05 --train-images 3000 --json docs/distributed_speed.json
    python benchmarks/distributed.py --split-only --json docs/distributed_split.json   # no fit, no timing

Prints a Markdown table; ``--json`` also writes every round's times, the weight differences,
the command and the machine. ``--split-only`` writes how the fit's members are shared among
``--ranks`` ranks by their FLOPs (:func:`~interpretgan.interpret.fit.member_cost`), which is
what each rank fits.
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
from interpretgan.layers import capture, default_layers
from interpretgan.runs import load_checkpoint, read_jsonl
from interpretgan.training import train_classifier
from interpretgan.interpret.fit import member_cost
from interpretgan.interpret.members import member_key
from interpretgan.runtime.distributed import World, shard_members

from _record import machine, spread, write


def _threads(n: int) -> None:
    if n:
        torch.set_num_threads(n)


def fit_setup(scale: float, device: str = "cpu"):
    """The benchmark fit's config (the quick preset, its schedule scaled by ``scale``) and its
    SmallCNN with random weights."""
    cfg = FIT_PRESETS.get("quick")
    cfg = dataclasses.replace(cfg, steps_per_scale=tuple(max(1, round(s * scale)) for s in cfg.steps_per_scale),
                              ckpt_every=10 ** 6, eval_images=64)
    torch.manual_seed(0)
    f = models.create("smallcnn").to(device).eval()
    torch.nn.init.normal_(f.classifier.fc3.weight, std=0.1)
    return cfg, f


def split(ranks: int, scale: float) -> dict:
    """Which members of the benchmark fit each rank fits, and the FLOPs (C + G + D forward, per
    sample) that share them out."""
    cfg, f = fit_setup(scale)
    names = default_layers(f)
    with torch.no_grad():
        feats = capture(f, torch.rand(1, 1, 32, 32), names)
    members = [(member_key(n, g), tuple(feats[n].shape[1:])) for n in names for g in cfg.generator_seeds]
    costs = {n: member_cost(s, 1, cfg) for n, s in members}
    shares = [[n for n, _ in shard_members(members, list(costs.values()), World(rank=r, size=ranks))]
              for r in range(ranks)]
    return {"ranks": ranks, "fit_preset": "quick", "generator_seeds": len(cfg.generator_seeds),
            "member_flops_per_sample": costs, "shares": shares,
            "share_flops_per_sample": [sum(costs[n] for n in share) for share in shares]}


def fit_job(out: str, scale: float, device: str, threads: int, result: str) -> None:
    """One fit (on every rank of the world this process is in); rank 0 writes the time."""
    with distributed.process_group(device) as world:
        _threads(threads)
        cfg, f = fit_setup(scale, world.device)
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


def run_job(job: str, setups: dict, a: argparse.Namespace, tmp: Path) -> dict:
    """``a.rounds`` alternated rounds of ``job`` on every setup: each run's times, and for a
    training job the last round's largest weight difference to the reference setup."""
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
    diffs = {}
    if job != "fit":  # the last round's models against the 1-process one
        w = {n: load_checkpoint(tmp / f"{job}-{n}-{a.rounds - 1}" / "checkpoints" / "final.pt")["state_dict"]
             for n in setups}
        ref = "1x1" if "1x1" in setups else "1"  # the same threads per process as the ranks
        diffs = {n: max((w[ref][k] - w[n][k]).abs().max().item() for k in w[ref]) for n in setups if n != ref}
    return {"times": times, "diffs": diffs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="CPU threads of the 1-process run (split among the ranks)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--fit-scale", type=float, default=0.1, help="share of the quick preset's 480 steps")
    p.add_argument("--train-images", type=int, default=6000)
    p.add_argument("--jobs", default="fit,natural,atta-trades")
    p.add_argument("--json", help="also write every run's times, the command and the machine here")
    p.add_argument("--split-only", action="store_true", help="only how the fit's members are shared among the ranks")
    a = p.parse_args(argv)
    started = machine()
    if a.split_only:
        doc = split(a.ranks, a.fit_scale)
        print(json.dumps(doc, indent=2))
        write(a.json, doc, started)
        return 0
    cpu = a.device == "cpu"
    # name → (processes, threads each); on the CPU also 1 process × 1 thread, the per-core baseline
    setups = {"1": (1, a.threads if cpu else 0), str(a.ranks): (a.ranks, max(1, a.threads // a.ranks) if cpu else 0)}
    if cpu and a.threads > 1:
        setups["1x1"] = (1, 1)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for job in a.jobs.split(","):
            res = run_job(job, setups, a, Path(d))
            base = {n: statistics.median(t["work_s"] for t in res["times"][n]) for n in setups}
            for name, (ranks, threads) in setups.items():
                runs = res["times"][name]
                rows.append({"job": job, "processes": ranks, "threads": threads,
                             "work_s": spread([t["work_s"] for t in runs]), "wall_s": spread([t["wall_s"] for t in runs]),
                             "speed_vs_1_process": base["1"] / base[name],
                             "speed_vs_1x1": base.get("1x1", base["1"]) / base[name],
                             "max_abs_weight_diff": res["diffs"].get(name)})
    print("| job | processes | work s | wall s | speed vs 1 process | speed vs 1 × 1 thread | max \\|Δw\\| vs 1 × 1 thread |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        proc = f"{r['processes']} × {r['threads']} thread(s)" if cpu else f"{r['processes']} GPU(s)"
        diff = r["max_abs_weight_diff"]
        print(f"| {r['job']} | {proc} | {r['work_s']['median']:.1f} | {r['wall_s']['median']:.1f} | "
              f"{r['speed_vs_1_process']:.2f}× | {r['speed_vs_1x1']:.2f}× | {'' if diff is None else f'{diff:.1e}'} |")
    write(a.json, {"device": a.device, "rounds": a.rounds, "fit_scale": a.fit_scale,
                   "train_images": a.train_images, "rows": rows}, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
