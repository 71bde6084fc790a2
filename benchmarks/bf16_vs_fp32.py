"""bf16 autocast vs fp32 on this CPU, side by side in one run (SmallCNN train step, PGD step,
generator step). Prints ms per call and the fp32/bf16 speed ratio (>1: bf16 is faster).

    python benchmarks/bf16_vs_fp32.py
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from interpretgan import models
from interpretgan.gan import Generator


def timeit(fn, n=10, warm=3):
    for _ in range(warm):
        fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1000


def main():
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

    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'workload':<34}{'fp32 ms':>10}{'bf16 ms':>10}{'fp32/bf16':>11}")
    for name, fn in [("SmallCNN train step (batch 128)", train_step),
                     ("PGD input gradient (batch 128)", input_grad),
                     ("generator fwd+bwd (batch 64)", gen_step)]:
        a = timeit(fn)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            b = timeit(fn, n=3, warm=1)
        print(f"{name:<34}{a:>10.1f}{b:>10.1f}{a / b:>11.2f}")


if __name__ == "__main__":
    main()
