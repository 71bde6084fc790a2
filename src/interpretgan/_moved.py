"""Forwarding for the flat module names of 0.1 whose contents moved to several modules: a
module-level ``__getattr__`` that finds each name in the new modules, in order."""
from __future__ import annotations

import importlib
from typing import Callable


def forward(old: str, *modules: str) -> tuple[Callable, Callable]:
    """``__getattr__`` and ``__dir__`` for the old module ``old``, reading from ``modules``."""

    def __getattr__(name: str):
        for m in modules:
            mod = importlib.import_module(m)
            if hasattr(mod, name):
                return getattr(mod, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r} "
                             f"(its contents moved to {', '.join(modules)})")

    def __dir__() -> list[str]:
        return sorted({n for m in modules for n in dir(importlib.import_module(m))})

    return __getattr__, __dir__
