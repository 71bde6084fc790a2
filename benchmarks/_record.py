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
import sys
from pathlib import Path

import torch


def command(argv: list[str] | None = None) -> str:
    """The command line that ran this benchmark, as a user would type it from the checkout."""
    script = Path(sys.argv[0])
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", f"benchmarks/{script.name}", *map(shlex.quote, args)])


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The machine as this process sees it; ``load_at_start`` is the 1-minute load average."""
    return {"cpu": _cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "load_at_start": round(os.getloadavg()[0], 2)}


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
