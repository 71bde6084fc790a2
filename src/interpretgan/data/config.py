"""The data set a job reads (:class:`DataConfig`) and its rules; the registry of data sets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..registry import Registry
from ..settings import at_least, known, rules


DATASETS: Registry[Callable] = Registry("dataset")  # name → loader(split, …) of an ImageDataset


class DataError(RuntimeError):
    """A data file is missing, truncated or corrupted; the message names it and the fix."""


@dataclass
class DataConfig:
    dataset: str = "mnist"
    data_dir: str | None = None
    cache_dir: str | None = None
    image_size: int = 32  # MNIST: 32 (padded, default) or 28
    train_subset: int | None = None  # use the first N of a fixed permutation
    test_subset: int | None = None
    augment: bool = False  # random crop (pad 4) + flip, for CIFAR-10
    verify: bool = True  # checksum the files (False: a deliberately modified CIFAR-10 copy)


# --------------------------------------------------------------------------- range rules
@rules(DataConfig)
def _data_rules(cfg: DataConfig, p: str) -> None:
    known(p + "dataset", cfg.dataset, DATASETS)
    at_least(cfg, p, 1, "image_size")
    at_least(cfg, p, 1, "train_subset", "test_subset", optional=True)

