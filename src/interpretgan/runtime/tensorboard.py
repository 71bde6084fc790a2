"""Live training curves through TensorBoard: one writer class for every part that logs.

:class:`TensorBoard` wraps ``torch.utils.tensorboard.SummaryWriter`` for one ``log_dir``;
with ``log_dir=None`` it is a no-op, so a caller logs unconditionally and never branches.
``tensorboard`` is an optional dependency (``pip install 'interpretgan[tensorboard]'``): it is
imported only when a log folder is asked for, and its absence is a one-line
:class:`TensorBoardMissingError`. Nothing here draws random numbers or touches a model: turning
logging on changes no result.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import torch

MISSING = ("TensorBoard logging (--tensorboard, log_dir=…) needs the tensorboard package: "
           "pip install tensorboard (or pip install 'interpretgan[tensorboard]')")


class TensorBoardMissingError(RuntimeError):
    """TensorBoard logging was asked for, and the ``tensorboard`` package is not installed."""


def require_tensorboard():
    """``SummaryWriter``, or :class:`TensorBoardMissingError` (one line) where the
    ``tensorboard`` package is missing: the check a job makes before any work."""
    try:
        # an optional heavy dependency (tensorboard, protobuf; seconds to import): imported
        # only when events are asked for
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TensorBoardMissingError(MISSING) from None
    return SummaryWriter


def make_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Images (N, C, H, W) tiled ``nrow`` to a row (rows filled left to right, the last one
    padded), ``padding`` pixels of ``pad_value`` around and between them: (C, H', W') with
    H' = rows·(H + padding) + padding, W' = min(N, nrow)·(W + padding) + padding."""
    if images.dim() != 4 or len(images) == 0:
        raise ValueError(f"make_grid takes a non-empty (N, C, H, W) batch, got shape {tuple(images.shape)}")
    n, c, h, w = images.shape
    cols = min(n, nrow)
    rows = math.ceil(n / cols)
    step_h, step_w = h + padding, w + padding
    grid = images.new_full((c, rows * step_h + padding, cols * step_w + padding), pad_value)
    for i, img in enumerate(images):
        r, k = divmod(i, cols)
        top, left = padding + r * step_h, padding + k * step_w
        grid[:, top: top + h, left: left + w] = img
    return grid


class TensorBoard:
    """TensorBoard events for ``log_dir`` (None: every method does nothing).

    ``purge_step``: a resumed job's first step; events of an earlier, killed process at or
    after it are hidden (TensorBoard's ``purge_step``), so a curve has one value per step.
    Use it as a context manager, or call :meth:`close`."""

    def __init__(self, log_dir: str | Path | None, purge_step: int | None = None):
        self.log_dir = None if log_dir is None else Path(log_dir)
        self._writer = None
        if self.log_dir is None:
            return
        writer = require_tensorboard()  # the optional dependency, imported here
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._writer = writer(log_dir=str(self.log_dir), purge_step=purge_step or None)

    @property
    def enabled(self) -> bool:
        return self._writer is not None

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """One scalar per ``{tag: value}`` at ``step`` (booleans and non-numbers are skipped)."""
        if self._writer is None:
            return
        for tag, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self._writer.add_scalar(tag, float(v), step)

    def images(self, step: int, tag: str, images: torch.Tensor, nrow: int = 8) -> None:
        """Images (N, C, H, W) in [0, 1] as one grid image (:func:`make_grid`) at ``step``."""
        if self._writer is None:
            return
        grid = make_grid(images.detach().float().cpu().clamp(0, 1), nrow=nrow)
        self._writer.add_image(tag, grid, step, dataformats="CHW")

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "TensorBoard":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
