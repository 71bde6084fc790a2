"""What a benchmark's ``--json`` file records besides its numbers: the command that wrote it and
the machine it ran on (CPU model, cores, PyTorch, threads, the load average when it started and
ended: a timing taken on a busy machine says so). scripts/make_docs.py builds docs tables from
these files."""
from __future__ import annotations

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import torch


def command(argv: list[str] | None = None) -> str:
    """The command line that ran this benchmark, as a user would type it from the checkout."""
    script = Path(sys.argv[0])
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", f"benchmarks/{script.name}", *map(shlex.quote, args)])


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
    """The machine as this process sees it: CPU, cores, bf16 units, torch, threads, the GPU,
    the commit, and ``load_at_start``, the 1-minute load average (other work on the cores
    shows there)."""
    name, flags = _cpu()
    return {"cpu": name, "cores": os.cpu_count(), "avx512_bf16": "avx512_bf16" in flags,
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "commit": _commit(), "load_at_start": round(os.getloadavg()[0], 2)}


def median_range(v: list[float], fmt: str = "{:.2f}") -> str:
    """``median [min, max]`` of ``v``."""
    return f"{fmt.format(statistics.median(v))} [{fmt.format(min(v))}, {fmt.format(max(v))}]"


def spread(values: list[float]) -> dict:
    """Every value, their median and their range."""
    return {"all": list(values), "median": statistics.median(values), "min": min(values), "max": max(values)}


def write(path: str | Path | None, doc: dict, started: dict) -> None:
    """Write ``doc`` with the command and the machine (``started``: :func:`machine` taken at the
    start; the load average at the end is added) to ``path`` (nothing when None)."""
    if not path:
        return
    out = {"command": command(), "machine": {**started, "load_at_end": round(os.getloadavg()[0], 2)}, **doc}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(out, indent=2) + "\n")
