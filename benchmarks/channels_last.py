"""Contiguous (NCHW) vs channels-last (NHWC) weights on this CPU, side by side in one run.

The training loop and ``load_classifier`` keep conv nets channels-last on the CPU
(:func:`interpretgan.models.fast_layout`); this shows why. For each step kind the two layouts
are timed in alternation (``--rounds`` rounds), so a slow spell of the machine hits both.

    python benchmarks/channels_last.py --rounds 6

Prints the median ms per call and the ratio NCHW / NHWC (> 1: channels-last is faster).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from interpretgan import models
from interpretgan.attacks import pgd
from interpretgan.training import atta_trades_step, natural_step, trades_step


def _steps(net, x, y):
    opt = torch.optim.SGD(net.parameters(), lr=1e-4, momentum=0.9)
    delta = 0.3 * (2 * torch.rand_like(x) - 1)
    return {
        "natural step": lambda: natural_step(net, opt, x, y),
        "ATTA-1 TRADES step": lambda: atta_trades_step(net, opt, x, y, delta, 0.3, 0.1),
        "TRADES step, 10 KL steps": lambda: trades_step(net, opt, x, y, 0.3, 0.01, 10),
        "PGD-10 (eval)": lambda: pgd(net, x, y, 0.3, 0.01, 10),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=6)
    a = p.parse_args()
    torch.manual_seed(0)
    cases = {"smallcnn, MNIST 32 px, batch 128": (models.create("smallcnn"),
                                                  torch.rand(128, 1, 32, 32)),
             "vgg16, CIFAR 32 px, batch 32": (models.create("vgg16"), torch.rand(32, 3, 32, 32))}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {a.rounds} rounds")
    print(f"{'case':<36}{'step':<27}{'NCHW ms':>9}{'NHWC ms':>9}{'ratio':>7}")
    for case, (net, x) in cases.items():
        y = torch.randint(0, 10, (len(x),))
        fast = models.fast_layout(copy.deepcopy(net))
        plain, nhwc = _steps(net, x, y), _steps(fast, x, y)
        for name in plain:
            times = {"plain": [], "nhwc": []}
            plain[name](), nhwc[name]()  # warm-up
            for _ in range(a.rounds):
                for key, fn in (("plain", plain[name]), ("nhwc", nhwc[name])):
                    t = time.perf_counter()
                    fn()
                    times[key].append(1000 * (time.perf_counter() - t))
            a_ms, b_ms = statistics.median(times["plain"]), statistics.median(times["nhwc"])
            print(f"{case:<36}{name:<27}{a_ms:>9.1f}{b_ms:>9.1f}{a_ms / b_ms:>6.2f}x")


if __name__ == "__main__":
    main()
