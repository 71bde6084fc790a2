"""Contiguous (NCHW) vs channels-last (NHWC) weights on this CPU, side by side in one run.

The training loop and ``load_classifier`` keep conv nets channels-last on the CPU
(:func:`interpretgan.models.fast_layout`); this shows why. For each step kind the two layouts
are timed in alternation (``--rounds`` rounds), so a slow spell of the machine hits both.

    python benchmarks/channels_last.py --rounds 6 --json docs/channels_last.json
    python benchmarks/channels_last.py --rounds 6 --bf16 --cases smallcnn --json docs/channels_last_bf16.json

Prints the median ms per call and the ratio NCHW / NHWC (> 1: channels-last is faster);
``--json`` also writes every round's times, the command and the machine. ``--bf16`` runs every
step under bf16 autocast (as the quick ATTA preset trains where the CPU has bf16 units).
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time

import torch

from interpretgan import models
from interpretgan.attacks import pgd
from interpretgan.training import atta_trades_step, natural_step, trades_step

from _record import machine, spread, write


def _steps(net, x, y):
    opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9)
    delta = 0.3 * (2 * torch.rand_like(x) - 1)
    return {
        "natural step": lambda: natural_step(net, opt, x, y),
        "ATTA-1 TRADES step": lambda: atta_trades_step(net, opt, x, y, delta, 0.3, 0.1),
        "TRADES step, 10 KL steps": lambda: trades_step(net, opt, x, y, 0.3, 0.01, 10),
        "PGD-10 (eval)": lambda: pgd(net, x, y, 0.3, 0.01, 10),
    }


def cases(names: list[str]) -> dict:
    """The models and input batches to time, by short name."""
    torch.manual_seed(0)
    every = {"smallcnn": ("smallcnn, MNIST 32 px, batch 128", lambda: (models.create("smallcnn"),
                                                                     torch.rand(128, 1, 32, 32))),
             "vgg16": ("vgg16, CIFAR 32 px, batch 32", lambda: (models.create("vgg16"), torch.rand(32, 3, 32, 32)))}
    return {every[n][0]: every[n][1]() for n in names}


def alternate(plain, nhwc, rounds: int, bf16: bool) -> dict[str, list[float]]:
    """ms of each call of the two layouts' step, alternated over ``rounds`` after one warm-up."""
    def ctx():
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    times = {"plain": [], "nhwc": []}
    with ctx():
        plain(), nhwc()  # warm-up
    for _ in range(rounds):
        for key, fn in (("plain", plain), ("nhwc", nhwc)):
            t = time.perf_counter()
            with ctx():
                fn()
            times[key].append(1000 * (time.perf_counter() - t))
    return times


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--cases", default="smallcnn,vgg16")
    p.add_argument("--bf16", action="store_true", help="every step under bf16 autocast")
    p.add_argument("--json", help="also write every round's times, the command and the machine here")
    a = p.parse_args(argv)
    started = machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {a.rounds} rounds"
          f"{', bf16 autocast' if a.bf16 else ''}")
    print(f"{'case':<36}{'step':<27}{'NCHW ms':>9}{'NHWC ms':>9}{'ratio':>7}")
    rows = []
    for case, (net, x) in cases(a.cases.split(",")).items():
        y = torch.randint(0, 10, (len(x),))
        fast = models.fast_layout(copy.deepcopy(net))
        plain, nhwc = _steps(net, x, y), _steps(fast, x, y)
        for name in plain:
            times = alternate(plain[name], nhwc[name], a.rounds, a.bf16)
            a_ms, b_ms = statistics.median(times["plain"]), statistics.median(times["nhwc"])
            print(f"{case:<36}{name:<27}{a_ms:>9.1f}{b_ms:>9.1f}{a_ms / b_ms:>6.2f}x", flush=True)
            rows.append({"case": case, "step": name, "nchw_ms": spread(times["plain"]),
                         "nhwc_ms": spread(times["nhwc"]),
                         "ratios": [u / v for u, v in zip(times["plain"], times["nhwc"])]})
    write(a.json, {"rounds": a.rounds, "precision": "bf16 autocast" if a.bf16 else "fp32", "rows": rows}, started)


if __name__ == "__main__":
    main()
