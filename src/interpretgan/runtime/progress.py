"""Progress bars that suit where the output goes: redrawn live in a terminal; in a log file
(standard error not a terminal) at most one line a minute instead of one per update."""
from __future__ import annotations

import sys
from typing import Iterable

from tqdm.auto import tqdm


def progress_bar(iterable: Iterable | None = None, enabled: bool = True, **kwargs) -> tqdm:
    """``tqdm(iterable, **kwargs)``, off unless ``enabled``, not left on screen when done, and
    refreshed every 0.5 s in a terminal, every 60 s elsewhere. Update the postfix with
    ``bar.set_postfix(..., refresh=False)`` so it is drawn on the same schedule."""
    kwargs.setdefault("mininterval", 0.5 if sys.stderr.isatty() else 60.0)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=not enabled, **kwargs)
