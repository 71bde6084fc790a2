"""Aligned CelebFaces (the paper's gender classifier): a folder of JPEGs, the attribute list and
the partitions."""
from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from PIL import Image, UnidentifiedImageError

from .config import DataError, DATASETS
from .sources import default_cache_dir, subset_indices


# ---- CelebA (aligned images, gender)
CELEBA_SPLITS = {"train": 0, "valid": 1, "test": 2}


class CelebA(Dataset):
    """CelebA aligned faces with the ``Male`` attribute as label (1 = male, 0 = female).

    Reads ``img_align_celeba/*.jpg``, ``list_attr_celeba.txt`` and ``list_eval_partition.txt``
    from ``root``; images are centre-cropped to ``crop`` px (128 as in the GAN zoo's
    celeba_cropped) and resized to ``size``. Items: ``(float (3, size, size), label)``.
    """

    classes = ["female", "male"]

    def __init__(self, root: str | os.PathLike, split: str = "train", crop: int = 128,
                 size: int = 128, attribute: str = "Male"):
        root = Path(root)
        if (root / "celeba").is_dir() and not (root / "list_attr_celeba.txt").exists():
            root = root / "celeba"
        self.root, self.crop, self.size = root, crop, size
        attr_file, part_file = root / "list_attr_celeba.txt", root / "list_eval_partition.txt"
        self.image_dir = root / "img_align_celeba"
        for p in (attr_file, part_file, self.image_dir):
            if not p.exists():
                raise DataError(f"{p}: missing; CelebA needs img_align_celeba/, "
                                "list_attr_celeba.txt and list_eval_partition.txt in --data-dir")
        if split not in CELEBA_SPLITS and split != "all":
            raise ValueError(f"split must be one of train, valid, test, all, not {split!r}")
        labels = self._read_attr(attr_file, attribute)
        parts = self._read_partition(part_file)
        want = None if split == "all" else CELEBA_SPLITS[split]
        self.files = [f for f in labels if want is None or parts.get(f) == want]
        self.labels = torch.tensor([labels[f] for f in self.files], dtype=torch.long)

    @staticmethod
    def _read_attr(path: Path, attribute: str) -> dict[str, int]:
        lines = path.read_text().splitlines()
        try:
            n = int(lines[0].strip())
            names = lines[1].split()
            col = names.index(attribute)
            out = {}
            for line in lines[2: 2 + n]:
                parts = line.split()
                if len(parts) != len(names) + 1:
                    raise ValueError(f"row {parts[:1]} has {len(parts) - 1} values")
                out[parts[0]] = int(parts[1 + col] == "1")
            if len(out) != n:
                raise ValueError(f"header says {n} rows, found {len(out)}")
        except (IndexError, ValueError) as e:
            raise DataError(f"{path}: malformed attribute list ({e})") from e
        return out

    @staticmethod
    def _read_partition(path: Path) -> dict[str, int]:
        out = {}
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                out[parts[0]] = int(parts[1])
            elif parts:
                raise DataError(f"{path}: malformed line {line!r}")
        return out

    def __len__(self) -> int:
        return len(self.files)

    def subset(self, n: int | None, seed: int = 0) -> "CelebA":
        """The first ``n`` images of a fixed random permutation, as :meth:`ImageDataset.subset`
        picks them (all if ``n`` is None or at least the data set's size); files stay on disk."""
        if n is not None and n < 1:
            raise ValueError(f"a subset needs at least 1 image, got {n!r}")
        if n is None or n >= len(self):
            return self
        idx = subset_indices(len(self), n, seed)
        out = copy.copy(self)
        out.files = [self.files[int(i)] for i in idx]
        out.labels = self.labels[idx]
        return out

    @property
    def num_classes(self) -> int:
        return 2

    @property
    def shape(self) -> tuple[int, int, int]:
        return (3, self.size, self.size)

    def __getitem__(self, i):
        path = self.image_dir / self.files[i]
        if not path.is_file():
            raise DataError(f"{path}: missing (listed in {self.root / 'list_attr_celeba.txt'}); "
                            "restore the image or the whole img_align_celeba folder")
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                w, h = im.size
                c = min(self.crop, w, h)
                left, top = (w - c) // 2, (h - c) // 2
                im = im.crop((left, top, left + c, top + c))
                if c != self.size:
                    im = im.resize((self.size, self.size), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8).copy()
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"{path}: unreadable image ({e})") from e
        return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255), self.labels[i]


@DATASETS.register("celeba")
def load_celeba(split: str = "train", size: int = 128, data_dir=None, cache_dir=None,
                download: bool = True) -> CelebA:
    """CelebA gender; needs ``data_dir`` (or the cache) holding the aligned release."""
    cache = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "celeba"
    root = Path(data_dir) if data_dir is not None else cache
    if data_dir is None and not (root / "list_attr_celeba.txt").exists():
        raise DataError(
            "CelebA cannot be downloaded without signing in to Google Drive: download "
            "img_align_celeba.zip, list_attr_celeba.txt and list_eval_partition.txt from the "
            f"CelebA site, unzip into one folder and pass --data-dir (or put them in {cache})"
        )
    return CelebA(root, split=split, size=size)


load_celeba.native_size = 128
