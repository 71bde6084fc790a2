"""Which device a run uses: ``"auto"`` (the GPU when there is one), ``"cpu"``, ``"cuda"``,
``"cuda:1"`` …

Data stay on the CPU (datasets in memory, ATTA's per-example perturbation store); each batch
is moved to the model's device, so a model moved with ``.to(device)`` is all it takes.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None`` → ``cuda`` if available, else ``cpu``; other names are checked."""
    if spec is None or spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError as e:
        raise ValueError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} asked for, but this machine has no CUDA GPU "
                             "(or torch is a CPU build); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r}: only {torch.cuda.device_count()} GPU(s) here")
    elif dev.type != "cpu":
        raise ValueError(f"device {spec!r} is not supported; use auto, cpu, cuda or cuda:N")
    return dev


def module_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); CPU for a stateless module."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def noise_like(x: torch.Tensor, generator: torch.Generator | None = None,
               normal: bool = False) -> torch.Tensor:
    """Uniform [0, 1) (or, with ``normal``, standard normal) noise of ``x``'s shape and dtype on
    ``x``'s device, drawn on ``generator``'s device: a CPU generator gives the same numbers
    whatever device ``x`` is on."""
    draw = torch.randn if normal else torch.rand
    where = generator.device if generator is not None else x.device
    return draw(x.shape, generator=generator, device=where, dtype=x.dtype).to(x.device)
