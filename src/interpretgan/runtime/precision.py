"""bf16 autocast where the hardware runs it fast, fp32 elsewhere.

On a CPU with AVX-512-BF16 (or AMX) bf16 convolutions and matmuls ran ~1.7–1.9× faster than
fp32 here (``benchmarks/bf16_vs_fp32.py``); on an AVX2-only CPU PyTorch emulates them and they
ran 6–10× *slower*. So the ``amp`` settings in the configs take three values:

* ``"auto"`` — bf16 autocast if the device runs bf16 natively (CPU flags ``avx512_bf16`` or
  ``amx_bf16``; a CUDA GPU that reports bf16 support), fp32 otherwise;
* ``"on"`` — always bf16 autocast (slow on CPUs without bf16 units);
* ``"off"`` — fp32.

Weights, optimiser state and losses stay fp32; autocast only lowers the convolutions and
matmuls.
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

AMP_CHOICES = ("auto", "on", "off")


@functools.lru_cache(maxsize=None)
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags to read, "auto" stays fp32
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` runs bf16 arithmetic in hardware (not emulated)."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if kind == "cpu":
        return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())
    return False


def use_amp(setting: str | bool, device: str | torch.device = "cpu") -> bool:
    """Resolve an ``amp`` setting (``"auto"``/``"on"``/``"off"``, or a bool) for ``device``."""
    if isinstance(setting, bool):
        return setting
    if setting not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {AMP_CHOICES}, not {setting!r}")
    if setting == "auto":
        return native_bf16(device)
    return setting == "on"


def autocast(enabled: bool, device: str | torch.device = "cpu") -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled``; a no-op context otherwise."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
