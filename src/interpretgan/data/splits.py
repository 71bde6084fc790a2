"""A job's data: the train/test split a :class:`~interpretgan.data.config.DataConfig` names,
subsets and balanced orders of it, its batches, the data config a checkpoint records, and
content digests of what was read."""
from __future__ import annotations

from typing import Iterator

import hashlib
import inspect
import os

import torch
from torch.utils.data import Dataset
from torch.utils.data import DataLoader, Subset

from .config import DataConfig, DataError, DATASETS
from .folder import FolderImages
from .sources import ImageDataset, _derived_digest
from .transforms import _resize_uint8
from ..runtime.runs import load_checkpoint


def content_digest(ds) -> str:
    """A short digest of a data set without pinned files, whose content can change on disk:
    its own ``digest`` where it has one (a folder: the class names and every file's relative
    path, size and mtime_ns, so a huge folder is not read), else a digest of its in-memory
    images and labels."""
    if getattr(ds, "digest", None):
        return ds.digest
    h = hashlib.sha256(ds.images.numpy().tobytes())
    h.update(ds.labels.numpy().tobytes())
    return h.hexdigest()[:12]


def user_files(dataset: str) -> bool:
    """Whether ``dataset``'s files are the user's own (no pinned checksums)."""
    return bool(getattr(DATASETS.get(dataset), "user_files", False))


def unpinned(data_cfg) -> bool:
    """Whether the data's content is not fixed by pinned checksums (a user's image folder, or
    files read with ``verify=False``): results computed from it are keyed by its content."""
    return user_files(data_cfg.dataset) or not data_cfg.verify


def load_dataset(name: str, split: str = "train", **kwargs) -> Dataset:
    """``load_dataset("mnist", "test", size=28)`` — any registered dataset by name."""
    return DATASETS.get(name)(split=split, **kwargs)


def load_split(data_cfg, split: str) -> Dataset:
    """The dataset a :class:`~interpretgan.config.DataConfig` names, for ``split`` ('train' or
    'test'), cut to its ``train_subset``/``test_subset``."""
    kwargs = {"data_dir": data_cfg.data_dir, "cache_dir": data_cfg.cache_dir}
    takes_size = "size" in inspect.signature(DATASETS.get(data_cfg.dataset)).parameters
    if takes_size:
        kwargs["size"] = data_cfg.image_size
    if not data_cfg.verify:
        if "verify" not in inspect.signature(DATASETS.get(data_cfg.dataset)).parameters:
            raise ValueError(f"{data_cfg.dataset} files are always verified; verify=False is "
                             "only for datasets whose loader takes it (cifar10)")
        kwargs["verify"] = False
    ds = load_dataset(data_cfg.dataset, split, **kwargs)
    if not takes_size and isinstance(ds, ImageDataset) and ds.shape[-1] != data_cfg.image_size:
        ds = ImageDataset(_resize_uint8(ds.images, data_cfg.image_size, "resize"), ds.labels,
                          ds.name, ds.classes)
    n = data_cfg.train_subset if split == "train" else data_cfg.test_subset
    if n is not None and hasattr(ds, "subset"):  # in memory, or files on disk (CelebA)
        ds = ds.subset(n, seed=0)
    elif n is not None:
        ds = torch.utils.data.Subset(ds, list(range(min(n, len(ds)))))
    return ds


def native_size(dataset: str, data_dir: str | None = None) -> int | None:
    """The side in pixels a data set's files hold (28 for MNIST, 32 for CIFAR-10 …), from
    its loader's ``native_size`` (an int, or a function of ``data_dir``); None if unknown."""
    size = getattr(DATASETS.get(dataset), "native_size", None)
    return size(data_dir) if callable(size) else size


def checkpoint_data_config(path: str | os.PathLike, dataset: str | None = None,
                           **overrides) -> DataConfig:
    """The :class:`DataConfig` a checkpoint was trained on (its saved
    config), with ``overrides``; no training subset, no augmentation."""
    ck = load_checkpoint(path)
    cfg = ck.get("config", {}).get("data", {}) if isinstance(ck, dict) else {}
    data = DataConfig(**{k: v for k, v in cfg.items() if k in DataConfig.__dataclass_fields__})
    if dataset is not None:
        data.dataset = dataset
    if "model_kwargs" in ck and "input_size" in ck["model_kwargs"]:
        data.image_size = ck["model_kwargs"]["input_size"]
    for k, v in overrides.items():
        if v is not None:
            setattr(data, k, v)
    data.train_subset = None
    data.augment = False
    return data


def take(ds: Dataset, idx: torch.Tensor) -> Dataset:
    """Items ``idx`` (in that order) of ``ds``: an :class:`ImageDataset` for an in-memory
    dataset, a :class:`FolderImages` for a streamed folder, a
    :class:`torch.utils.data.Subset` otherwise."""
    if isinstance(ds, ImageDataset):
        return ImageDataset(ds.images[idx], ds.labels[idx], ds.name, ds.classes,
                            _derived_digest(ds.digest, idx))
    if isinstance(ds, FolderImages):
        return ds.take(idx)
    return torch.utils.data.Subset(ds, idx.tolist())


def dataset_labels(ds: Dataset) -> torch.Tensor:
    """The labels (N,) of every item of ``ds``, without reading its images where the data set
    keeps them apart (in memory, a folder, CelebA); int64."""
    if isinstance(ds, torch.utils.data.Subset):
        return dataset_labels(ds.dataset)[torch.as_tensor(ds.indices, dtype=torch.long)]
    labels = getattr(ds, "labels", None)
    if isinstance(labels, torch.Tensor):
        return labels.long()
    return torch.stack([torch.as_tensor(ds[i][1]) for i in range(len(ds))]).long()


def balanced_order(labels: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Every index of ``labels`` (N,), drawn by a seeded shuffle balanced by class: each
    class's indices shuffled, the classes (in a shuffled order) taking turns, so the first k
    cover min(k, classes) classes evenly however the items are stored (a folder lists
    its images class by class). The same ``(labels, seed)`` always give the same order."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    classes = labels.unique()
    classes = classes[torch.randperm(len(classes), generator=g)]
    key = torch.empty(len(labels), dtype=torch.long)
    for pos, c in enumerate(classes.tolist()):
        members = (labels == c).nonzero().squeeze(1)
        members = members[torch.randperm(len(members), generator=g)]
        key[members] = torch.arange(len(members)) * len(classes) + pos  # (turn, class)
    return torch.argsort(key)


def images_at(ds: Dataset, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, C, H, W) float in [0, 1] and labels (N,) of items ``idx``, on the CPU."""
    if isinstance(ds, ImageDataset):
        return ds.pixels(idx), ds.labels[idx]
    if isinstance(ds, FolderImages):
        return ds.read(idx)
    items = [ds[int(i)] for i in idx]
    return (torch.stack([x for x, _ in items]),
            torch.stack([torch.as_tensor(y) for _, y in items]).long())


def batches(ds: Dataset, batch_size: int, shuffle: bool = False, seed: int = 0,
            epoch: int = 0, drop_last: bool = False, with_index: bool = False,
            device: torch.device | str | None = None, start: int = 0) -> Iterator:
    """Yield ``(x, y)`` batches (``(idx, x, y)`` with ``with_index``); x is float in [0, 1].

    In-memory datasets are sliced as tensors (fast); others go through a DataLoader.
    The order depends only on ``(seed, epoch)``, so a resumed run sees the same batches;
    ``start``: the epoch's batches from that one on (a run resumed inside an epoch; the
    ones before are not read). ``device``: where x and y go (idx stays on the CPU);
    default: the CPU.
    """
    for item in _cpu_batches(ds, batch_size, shuffle, seed, epoch, drop_last, start):
        idx, x, y = item
        if device is not None and torch.device(device).type != "cpu":
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        yield (idx, x, y) if with_index else (x, y)


def _cpu_batches(ds: Dataset, batch_size: int, shuffle: bool, seed: int, epoch: int,
                 drop_last: bool, first: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    n = len(ds)
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch))
    else:
        order = torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    if isinstance(ds, FolderImages):  # decoded a batch ahead by a pool of threads
        yield from ds.stream(order[:stop], batch_size)
        return
    if isinstance(ds, ImageDataset):
        for s in range(first * batch_size, stop, batch_size):
            idx = order[s: s + batch_size]
            yield idx, ds.pixels(idx), ds.labels[idx]
        return

    start = min(first * batch_size, stop)
    loader = DataLoader(Subset(ds, order[start:stop].tolist()), batch_size=batch_size,
                        num_workers=min(4, os.cpu_count() or 1))
    try:
        for x, y in loader:
            idx = order[start: start + len(y)]
            start += len(y)
            yield idx, x, y
    except DataError as e:  # raised in a worker: its message comes wrapped in a traceback
        raise DataError(_worker_message(e)) from None


def _worker_message(e: DataError) -> str:
    """A :class:`DataError` a DataLoader worker raised, as the worker wrote it (the loader
    re-raises it with the worker's whole traceback as its message)."""
    tag = f"{DataError.__module__}.{DataError.__name__}: "
    lines = [ln for ln in str(e).splitlines() if ln.startswith(tag)]
    return lines[-1][len(tag):] if lines else str(e)


def num_batches(ds: Dataset, batch_size: int, drop_last: bool = False) -> int:
    return len(ds) // batch_size if drop_last else -(-len(ds) // batch_size)


class _LabelledItems(Dataset):
    """A data set whose items are images alone (or one-element tuples of them, as a
    ``TensorDataset(images)`` gives), each given label 0 (a fit needs no labels)."""

    def __init__(self, ds: Dataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        x = self.ds[i]
        return (x[0] if isinstance(x, (tuple, list)) else x), torch.tensor(0)


def as_image_dataset(images) -> Dataset:
    """Images a caller holds, as a data set of ``(float image (C, H, W) in [0, 1], label)``
    items the fit and D* read: a tensor (N, C, H, W) (uint8, or float in [0, 1]; labels 0);
    a :class:`~torch.utils.data.DataLoader` (its data set); a data set of ``(x, y)`` or
    of images alone (labels 0). A float tensor outside [0, 1] is one line (``ValueError``)."""
    if isinstance(images, DataLoader):
        images = images.dataset
    if isinstance(images, torch.Tensor):
        x = images.detach().cpu()
        check_images(x)
        return ImageDataset(x, torch.zeros(len(x), dtype=torch.long))
    if not isinstance(images, Dataset):
        raise TypeError(f"images: a tensor (N, C, H, W), a Dataset or a DataLoader, "
                        f"not {type(images).__name__}")
    first = images[0] if len(images) else None
    if isinstance(first, torch.Tensor) or (isinstance(first, (tuple, list)) and len(first) == 1):
        return _LabelledItems(images)  # images alone, or TensorDataset(images)'s items (x,)
    return images


def check_images(x: torch.Tensor, channels: int | None = None, size: int | None = None) -> None:
    """One line (``ValueError``) unless ``x`` is a batch (N, C, H, W) — uint8, or float in
    [0, 1] — with ``channels`` channels and ``size`` × ``size`` pixels where these are given."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"images must be a tensor (N, C, H, W), got {shape}")
    if x.is_floating_point() and x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"images must lie in [0, 1] (the model is given them as they are), "
                         f"got values in [{x.min().item():.3g}, {x.max().item():.3g}]")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"images have {x.shape[1]} channel(s); these generators were fitted on {channels}")
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        raise ValueError(f"images are {x.shape[-2]}×{x.shape[-1]} px; these generators were fitted on "
                         f"{size}×{size}")

