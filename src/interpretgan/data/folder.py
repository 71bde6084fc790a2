"""A user's image folder (``FOLDER/<split>/<class>/*.png|jpg``): listing, one colour mode for
all images, decoding, in memory or streamed."""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from PIL import Image, UnidentifiedImageError
from concurrent.futures import ThreadPoolExecutor

from .config import DataError, DATASETS
from .sources import ImageDataset, _derived_digest, default_cache_dir, subset_indices
from ..runtime.runs import read_json, write_json

log = logging.getLogger(__name__)


# ---- a folder of images: DIR/train/<class>/*, DIR/test/<class>/*
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


# A folder split whose decoded images (uint8) take at most this many bytes is read into
# memory once (an ImageDataset); a larger one is read from disk a batch at a time
# (FolderImages). Both give the same pixels.
FOLDER_IN_MEMORY_BYTES = 256 << 20


_SCAN_CHUNK = 4096  # files whose headers are read per round of the thread pool


def _workers() -> int:
    """Threads that decode images (Pillow releases the GIL while it decodes and resizes)."""
    return min(4, os.cpu_count() or 1)


def _folder_files(root: Path, split: str) -> tuple[dict[str, list[str]], int]:
    """``({class: sorted image file names}, files without an image suffix)`` of
    ``root/split`` (classes sorted by name); one-line :class:`DataError` for a missing split,
    no class folders, or a class folder without images."""
    d = root / split
    if not d.is_dir():
        raise DataError(f"{d}: missing; a folder data set needs {root}/train/<class>/ and "
                        f"{root}/test/<class>/ holding PNG or JPEG images")
    out, ignored = {}, 0
    for c in sorted(e.name for e in os.scandir(d) if e.is_dir()):
        names = []
        for e in os.scandir(d / c):
            if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES:
                names.append(e.name)
            else:
                ignored += 1
        out[c] = sorted(names)
    empty = [c for c, names in out.items() if not names]
    if not out or empty:
        raise DataError(f"{d}: no class folders with images" if not out else
                        f"{d}: class folder(s) {', '.join(empty)} hold no PNG or JPEG images")
    return out, ignored


@dataclasses.dataclass(frozen=True)
class FolderListing:
    """A folder data set as its directory listings and file stats show it (no pixels read):
    the classes (the training split's class folders, sorted), per split the image files
    (``<class>/<name>``, relative to ``root/<split>``) in class order with their labels, and
    per split a digest of the class names and every file's (relative path, size, mtime_ns)."""

    root: Path
    classes: tuple[str, ...]
    files: dict[str, list[str]]
    labels: dict[str, list[int]]
    digests: dict[str, str]
    ignored: int  # files without an image suffix (not part of the data set)


def list_folder(root: Path) -> FolderListing:
    """:class:`FolderListing` of ``root``; one-line :class:`DataError` for a class folder of
    the test split that the training split lacks (and see :func:`_folder_files`)."""
    classes: list[str] = []
    files, labels, digests, ignored = {}, {}, {}, 0
    for split in ("train", "test"):
        per, skipped = _folder_files(root, split)
        ignored += skipped
        classes = classes or list(per)
        unknown = sorted(set(per) - set(classes))
        if unknown:
            raise DataError(f"{root / split}: class folder(s) {', '.join(unknown)} are not in "
                            f"{root / 'train'}")
        h = hashlib.sha256("\0".join(classes).encode())
        files[split], labels[split] = [], []
        for label, c in enumerate(classes):
            for name in per.get(c, []):
                rel = f"{c}/{name}"
                st = os.stat(root / split / rel)
                h.update(f"\n{rel}\0{st.st_size}\0{st.st_mtime_ns}".encode())
                files[split].append(rel)
                labels[split].append(label)
        digests[split] = h.hexdigest()[:12]
    if ignored:
        log.info("%s: %d file(s) without a .png/.jpg/.jpeg suffix are not part of the data set",
                 root, ignored)
    return FolderListing(root, tuple(classes), files, labels, digests, ignored)


def _header_mode(path: Path) -> str:
    """The Pillow mode of the image at ``path`` from its header; one-line :class:`DataError`
    naming a file that is no readable image, or a 16/32-bit one."""

    try:
        with Image.open(path) as im:
            mode = im.mode
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image ({type(e).__name__}: {e}); remove it from "
                        "the folder or convert it to PNG or JPEG") from None
    if mode.startswith("I") or mode == "F":
        raise DataError(f"{path}: a {mode} (16/32-bit) image; convert the folder to 8-bit PNG or JPEG")
    return mode


def _scan_modes(listing: FolderListing) -> str:
    """"L" if every image of both splits is grey-scale, else "RGB", from every file's header
    (read by a pool of threads, a chunk at a time)."""

    paths = [listing.root / split / rel for split in ("train", "test") for rel in listing.files[split]]
    grey = True
    with ThreadPoolExecutor(_workers()) as ex:
        for s in range(0, len(paths), _SCAN_CHUNK):
            for mode in ex.map(_header_mode, paths[s: s + _SCAN_CHUNK]):
                grey = grey and mode in ("L", "LA", "1")
    return "L" if grey else "RGB"


def folder_mode(listing: FolderListing, cache_dir=None) -> str:
    """The Pillow mode both splits are read in (:func:`_scan_modes`). The scan reads every
    file's header once; its result is kept in the cache (``folders/<key>.json``, the key
    made of the folder's path and digests), so a folder whose listing and stats have not
    changed is not scanned again. An unreadable file fails the scan (one-line
    :class:`DataError` naming it), so nothing is cached for it."""

    key = hashlib.sha256(f"{listing.root.resolve()}\0{listing.digests['train']}\0"
                         f"{listing.digests['test']}".encode()).hexdigest()[:16]
    path = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "folders" / f"{key}.json"
    try:
        mode = read_json(path).get("mode") if path.exists() else None
    except (OSError, ValueError, AttributeError):
        mode = None  # unreadable or malformed: scan again
    if mode in ("L", "RGB"):
        return mode
    mode = _scan_modes(listing)
    try:
        write_json(path, {"root": str(listing.root.resolve()), "mode": mode,
                          "images": sum(len(f) for f in listing.files.values())})
    except OSError as e:  # a read-only cache costs a scan per load, nothing else
        log.info("cannot keep the folder scan in %s (%s)", path, e)
    return mode


def decode_image(path: Path, mode: str, size: int) -> np.ndarray:
    """The image at ``path`` as uint8 ``(C, size, size)`` in Pillow ``mode`` ("L" or "RGB"),
    as torchvision's evaluation transform ``Resize(size)`` + ``CenterCrop(size)`` reads it:
    the shorter side resized to ``size`` (bilinear), then the centre ``size`` × ``size``
    cut out (a square image is just resized). One-line :class:`DataError` if unreadable."""

    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            w, h = im.size
            if (w, h) != (size, size):
                short = min(w, h)
                nw, nh = (size, int(size * h / w)) if w == short else (int(size * w / h), size)
                im = im.resize((nw, nh), Image.BILINEAR)
                left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
                if (nw, nh) != (size, size):
                    im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: unreadable image ({type(e).__name__}: {e}); remove it from "
                        "the folder or replace it") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


class FolderImages(Dataset):
    """One split of a folder data set, read from disk when asked for: nothing but the file
    names and labels is held, so memory does not grow with the folder. Items:
    ``(float (C, size, size) in [0, 1], label)`` (:func:`decode_image`).
    :func:`batches` reads it through :meth:`stream` (a pool of threads decodes the next
    batch while the current one is used; the order is that of the indices, always)."""

    def __init__(self, root: Path, files: Sequence[str], labels: torch.Tensor,
                 classes: Sequence[str], mode: str, size: int, digest: str):
        self.root, self.files, self.labels = root, list(files), labels.long()
        self.classes, self.mode, self.size = list(classes), mode, size
        self.digest, self.name = digest, "folder"

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i):
        return torch.from_numpy(self.read_uint8([i])[0]).float().div_(255), self.labels[i]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1 if self.mode == "L" else 3, self.size, self.size)

    def _decode(self, i: int) -> np.ndarray:
        return decode_image(self.root / self.files[i], self.mode, self.size)

    def read_uint8(self, idx) -> np.ndarray:
        """Items ``idx`` as uint8 ``(N, C, size, size)``, decoded by a pool of threads."""

        idx = [int(i) for i in idx]
        if len(idx) < 2:
            return np.stack([self._decode(i) for i in idx])
        with ThreadPoolExecutor(_workers()) as ex:
            return np.stack(list(ex.map(self._decode, idx)))

    def read(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, C, size, size) float in [0, 1] and labels (N,) of items ``idx``."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        return torch.from_numpy(self.read_uint8(idx)).float().div_(255), self.labels[idx]

    def stream(self, order: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(idx, x, y)`` for consecutive ``batch_size`` slices of ``order``; the next batch is
        decoded while the caller works on this one (at most two batches held)."""

        ex = ThreadPoolExecutor(_workers())
        submit = lambda idx: [ex.submit(self._decode, int(i)) for i in idx]  # noqa: E731
        try:
            ahead = submit(order[:batch_size])
            for s in range(0, len(order), batch_size):
                idx, cur = order[s: s + batch_size], ahead
                ahead = submit(order[s + batch_size: s + 2 * batch_size])
                x = torch.from_numpy(np.stack([f.result() for f in cur])).float().div_(255)
                yield idx, x, self.labels[idx]
        finally:
            ex.shutdown(wait=True, cancel_futures=True)

    def take(self, idx) -> "FolderImages":
        """Items ``idx`` (in that order), still on disk."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        return FolderImages(self.root, [self.files[int(i)] for i in idx], self.labels[idx],
                            self.classes, self.mode, self.size, _derived_digest(self.digest, idx))

    def subset(self, n: int | None, seed: int = 0) -> "FolderImages":
        """The first ``n`` items of a fixed random permutation (as :meth:`ImageDataset.subset`);
        files stay on disk."""
        if n is not None and n < 1:
            raise ValueError(f"a subset needs at least 1 image, got {n!r}")
        if n is None or n >= len(self):
            return self
        return self.take(subset_indices(len(self), n, seed))


def _folder_root(data_dir) -> Path:
    if data_dir is None:
        raise DataError("--dataset folder needs --data-dir DIR (DIR/train/<class>/*, DIR/test/<class>/*)")
    return Path(data_dir)


@DATASETS.register("folder")
def load_folder(split: str = "train", size: int = 32, data_dir=None, cache_dir=None,
                download: bool = True, in_memory_bytes: int | None = None):
    """A folder of images as a data set: ``data_dir/<split>/<class>/*.png|jpg|jpeg``, classes
    named after the training split's folders (sorted), grey-scale when every image of both
    splits is, RGB otherwise (``(N, 1 or 3, size, size)``, the same for both splits), each
    image read as torchvision's ``Resize(size)`` + ``CenterCrop(size)`` would
    (:func:`decode_image`). Files with other suffixes are not part of it; a file with an
    image suffix that is no readable image, a 16-bit image or an empty class folder is
    refused (one-line :class:`DataError`).

    A split of at most ``in_memory_bytes`` decoded bytes (default
    :data:`FOLDER_IN_MEMORY_BYTES`) comes back in memory (:class:`ImageDataset`), a larger one
    as :class:`FolderImages`, read a batch at a time."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    listing = list_folder(_folder_root(data_dir))
    mode = folder_mode(listing, cache_dir)
    ds = FolderImages(listing.root / split, listing.files[split], torch.tensor(listing.labels[split]),
                      listing.classes, mode, size, listing.digests[split])
    limit = FOLDER_IN_MEMORY_BYTES if in_memory_bytes is None else in_memory_bytes
    if len(ds) * ds.shape[0] * size * size > limit:
        return ds
    images = torch.from_numpy(ds.read_uint8(range(len(ds))))
    return ImageDataset(images, ds.labels, "folder", ds.classes, digest=ds.digest)


def _folder_native_size(data_dir) -> int | None:
    """The side of the first training image, if it is square."""

    per, _ = _folder_files(_folder_root(data_dir), "train")
    c, names = next(iter(per.items()))
    with Image.open(_folder_root(data_dir) / "train" / c / names[0]) as im:
        w, h = im.size
    return w if w == h else None


load_folder.native_size = _folder_native_size
load_folder.user_files = True  # no pinned checksums: cached results are keyed by content
