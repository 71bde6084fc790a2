"""bf16 autocast vs fp32 on this CPU (SmallCNN train step, PGD step, generator step, ATTA-1
TRADES step, one joint fit step of the seven default SmallCNN layers in the warm-up and in the
GAN phase as the quick preset runs it on a CPU), in alternating rounds (fp32, bf16, then bf16, fp32, …) so that the machine's drift hits both alike.
Prints ms per call (median over rounds) and the fp32/bf16 speed ratio of each round, median and
range (>1: bf16 is faster).

    python benchmarks/bf16_vs_fp32.py --rounds 6 --json docs/bf16_vs_fp32.json

On a CPU without bf16 units PyTorch emulates them. On a CPU with them, ``ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2`` in the environment keeps oneDNN and PyTorch's own kernels to AVX2,
as on a CPU without them.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from interpretgan import models
from interpretgan.gan import Generator
from interpretgan.training import atta_trades_step

from _record import machine
from fit_speed import make_runner


ISA_LIMITS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")  # recorded in the command when set


def timeit(fn, n: int) -> float:
    """ms per call of ``fn`` over ``n`` calls."""
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1000


def alternate(fn, rounds: int, n: int) -> tuple[list[float], list[float]]:
    """``fn`` in fp32 and under bf16 autocast, alternating A B / B A rounds: (fp32 ms, bf16 ms)."""
    def bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fn()
    for _ in range(2):  # warm up both paths
        fn(), bf16()
    a, b = [], []
    for r in range(rounds):
        for which in ((fn, a), (bf16, b)) if r % 2 == 0 else ((bf16, b), (fn, a)):
            which[1].append(timeit(which[0], n))
    return a, b


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--calls", type=int, default=5, help="calls per round and variant")
    p.add_argument("--json", type=Path, help="also write every round's times here")
    args = p.parse_args()
    started = machine()
    torch.manual_seed(0)
    net = models.create("smallcnn")
    torch.nn.init.normal_(net.classifier.fc3.weight, std=0.05)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x, y = torch.rand(128, 1, 32, 32), torch.randint(0, 10, (128,))
    G = Generator(128, (64, 64, 32, 16), 1)
    z = torch.randn(1, 64, 128)  # (members, batch, code)

    def train_step():
        loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def input_grad():
        xx = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(net.eval()(xx).float(), y), [xx])

    def gen_step():
        G(z).float().mean().backward()

    def atta_step():
        atta_trades_step(net.train(), opt, x, y, delta, 0.3, 0.1)

    delta = 0.3 * (2 * torch.rand_like(x) - 1)
    cpu = torch.device("cpu")
    fit_warm, _ = make_runner("stacked", "quick", 32, True, cpu, amp=False)
    fit_gan, _ = make_runner("stacked", "quick", 32, False, cpu, amp=False)

    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads")
    print(f"{args.rounds} alternating rounds of {args.calls} calls each")
    print(f"{'workload':<34}{'fp32 ms':>10}{'bf16 ms':>10}{'fp32/bf16 median [range]':>27}")
    rows = []
    for name, fn in [("SmallCNN train step (batch 128)", train_step),
                     ("PGD input gradient (batch 128)", input_grad),
                     ("generator fwd+bwd (batch 64)", gen_step),
                     ("ATTA-1 TRADES step (batch 128)", atta_step),
                     ("joint fit step, 7 layers, batch 32, 32 px, L_I only", fit_warm),
                     ("the same with the GAN term (D update, lazy R1)", fit_gan)]:
        a, b = alternate(fn, args.rounds, args.calls)
        ratios = [x / y for x, y in zip(a, b)]
        print(f"{name:<34}{statistics.median(a):>10.1f}{statistics.median(b):>10.1f}"
              f"{statistics.median(ratios):>13.2f} [{min(ratios):.2f}, {max(ratios):.2f}]", flush=True)
        rows.append({"workload": name, "fp32_ms": a, "bf16_ms": b, "ratios": ratios})
    if args.json:
        args.json.write_text(json.dumps({
            "command": "".join(f"{k}={os.environ[k]} " for k in ISA_LIMITS if k in os.environ)
                       + f"python benchmarks/bf16_vs_fp32.py --rounds {args.rounds} --calls {args.calls}",
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(), "machine": {**started, "load_at_end": round(os.getloadavg()[0], 2)},
            "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
