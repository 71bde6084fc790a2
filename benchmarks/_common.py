"""What the alternated benchmarks share: the machine they ran on and median [range] summaries.

Imported by the scripts in this folder (``python benchmarks/x.py`` puts it on ``sys.path``).
"""
from __future__ import annotations

import os
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def _cpu() -> tuple[str, set[str]]:
    """The CPU's model name and its flags (from /proc/cpuinfo where there is one)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    return name, flags


def _commit() -> str | None:
    """This checkout's commit (``+`` when it has uncommitted changes), or None outside git."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+" if dirty else "")


def machine() -> dict:
    """The machine a measurement ran on: CPU, cores, bf16 units, torch, threads, the load
    average when it started (other work on the cores shows there) and the commit."""
    name, flags = _cpu()
    return {"cpu": name, "cores": os.cpu_count(), "avx512_bf16": "avx512_bf16" in flags,
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()], "commit": _commit()}


def command(script: str) -> str:
    """The command line that ran ``script``, as a user would type it."""
    return " ".join(["python", f"benchmarks/{script}", *map(shlex.quote, sys.argv[1:])])


def median_range(v: list[float], fmt: str = "{:.2f}") -> str:
    """``median [min, max]`` of ``v``."""
    return f"{fmt.format(statistics.median(v))} [{fmt.format(min(v))}, {fmt.format(max(v))}]"
