"""Saving a matplotlib figure atomically, headless (the Agg backend)."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .runs import atomic_write_bytes


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Render a matplotlib figure to PNG and write it atomically; closes the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
