"""Image folders of any size: read from disk a batch at a time (shorter side resized, centre
cropped), keyed by file stats, drawn balanced by class, bad input refused in one line."""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

from interpretgan import data
from interpretgan.cli import main
from interpretgan.runs import load_checkpoint, read_json
from test_own_model import RGB32, _one_error, _rgb_model, write_folder
from test_pipeline import tiny_cli


def test_streamed_and_in_memory_folders_give_the_same_batches(tmp_path):
    root = write_folder(tmp_path / "pets")
    kept = data.load_folder("test", 32, root, cache_dir=tmp_path)
    streamed = data.load_folder("test", 32, root, cache_dir=tmp_path, in_memory_bytes=0)
    assert isinstance(kept, data.ImageDataset) and isinstance(streamed, data.FolderImages)
    assert streamed.shape == kept.shape == (3, 32, 32) and streamed.classes == kept.classes
    for shuffle in (False, True):
        a = list(data.batches(kept, 7, shuffle=shuffle, seed=3, epoch=1, with_index=True))
        b = list(data.batches(streamed, 7, shuffle=shuffle, seed=3, epoch=1, with_index=True))
        assert len(a) == len(b) == 9
        for (ia, xa, ya), (ib, xb, yb) in zip(a, b):
            assert torch.equal(ia, ib) and torch.equal(xa, xb) and torch.equal(ya, yb)
    idx = torch.tensor([5, 41, 0])
    assert all(torch.equal(u, v) for u, v in zip(data.images_at(kept, idx), data.images_at(streamed, idx)))
    sub = streamed.subset(9, seed=1)
    assert isinstance(sub, data.FolderImages) and torch.equal(sub.labels, kept.subset(9, seed=1).labels)
    assert data.content_digest(kept) == data.content_digest(streamed)


def test_images_are_resized_on_the_shorter_side_and_centre_cropped(tmp_path):
    """A 60 × 20 image: blue centre square, red 20-px bands left and right. Squashed to
    10 × 10 (the old reading) its outer columns would be red; cropped, only the resize
    filter's edge reaches into the bands."""
    arr = np.zeros((20, 60, 3), np.uint8)
    arr[:, :20, 0] = arr[:, 40:, 0] = 255
    arr[:, 20:40, 2] = 255
    for split in ("train", "test"):
        (tmp_path / "f" / split / "a").mkdir(parents=True)
        Image.fromarray(arr).save(tmp_path / "f" / split / "a" / "wide.png")
        Image.fromarray(arr.transpose(1, 0, 2).copy()).save(tmp_path / "f" / split / "a" / "tall.png")
    for in_memory in (None, 0):
        x, _ = data.images_at(data.load_folder("test", 10, tmp_path / "f", cache_dir=tmp_path,
                                               in_memory_bytes=in_memory), torch.arange(2))
        assert x.shape == (2, 3, 10, 10)
        assert float(x[:, 0].max()) < 0.2 and float(x[:, 2, 1:-1, 1:-1].min()) == 1


def test_a_streamed_split_holds_names_and_reads_only_what_is_asked(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "pets")
    data.load_folder("train", 32, root, cache_dir=tmp_path)  # the header scan, cached
    decoded = []
    real = data.decode_image
    monkeypatch.setattr(data.folder, "decode_image", lambda p, m, s: decoded.append(p) or real(p, m, s))
    monkeypatch.setattr(data.folder, "_header_mode", lambda p: pytest.fail("scanned again"))
    ds = data.load_folder("train", 32, root, cache_dir=tmp_path, in_memory_bytes=0)
    sample = ds.subset(5, seed=2)
    assert decoded == [] and not hasattr(ds, "images")
    next(data.batches(sample, 5))
    assert sorted(decoded) == sorted(root / "train" / f for f in sample.files)


def test_a_folder_digest_follows_file_stats_without_reading_pixels(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "pets")
    ds = data.load_folder("test", 32, root, cache_dir=tmp_path, in_memory_bytes=0)
    monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("read an image"))
    before = data.content_digest(ds)
    assert data.list_folder(root).digests["test"] == before
    assert data.list_folder(root).digests["train"] == data.load_folder(
        "train", 32, root, cache_dir=tmp_path, in_memory_bytes=0).digest  # the scan is cached
    f = root / "test" / "dog" / "3.png"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))  # touched: same size, new time
    assert data.list_folder(root).digests["test"] != before


def test_balanced_order_spreads_over_classes_and_is_seeded():
    labels = torch.tensor([0] * 30 + [1] * 20 + [2] * 10)  # stored class by class
    order = data.balanced_order(labels, seed=4)
    assert sorted(order.tolist()) == list(range(60))
    assert torch.equal(order, data.balanced_order(labels, seed=4))
    assert not torch.equal(order, data.balanced_order(labels, seed=5))
    assert set(labels[order[:3]].tolist()) == {0, 1, 2}
    assert labels[order[:30]].bincount().tolist() == [10, 10, 10]


def test_generators_for_224_px_render_256_and_meet_the_classifier_at_224():
    from interpretgan.config import FIT_PRESETS, fit_for_image_size
    from interpretgan.fitting import LayerGAN
    from interpretgan.gan import generator_scales, to_classifier, to_resolution

    assert generator_scales(224) == generator_scales(256) == 7
    cfg = fit_for_image_size(FIT_PRESETS.get("quick"), 224)
    assert len(cfg.g_channels) == len(cfg.d_channels) == len(cfg.steps_per_scale) == 7
    torch.manual_seed(0)
    g = LayerGAN("conv", (4, 7, 7), 3, cfg).eval()
    with torch.no_grad():
        x_hat = g.explain(torch.randn(2, 4, 7, 7))
        assert x_hat.shape == (2, 3, 256, 256)
        assert to_classifier(x_hat, 224).shape == (2, 3, 224, 224)
        assert g.D(to_resolution(torch.rand(2, 3, 224, 224), 256)[None], 6, 1.0).shape[:2] == (1, 2)


def test_a_class_sorted_folder_is_diagnosed_and_explained_across_its_classes(tmp_path, shared_cache,
                                                                          monkeypatch):
    """Whole-split D* and the explanation grid on a folder stored class by class: both drawn
    balanced by class, not in file order; streamed and in-memory runs give the same results."""
    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    folder = write_folder(tmp_path / "pets", n=(8, 6))
    src = _rgb_model(tmp_path, RGB32)
    args = ["--layers", "conv,fc", "--dataset", "folder", "--data-dir", str(folder), "--model-file",
            f"{src}:build", "--checkpoint", str(tmp_path / "rgb.pt"), "--image-size", "32",
            "--set", "explain_images=3", "--set", "fit.eval_images=4"]
    results = {}
    for limit in (data.FOLDER_IN_MEMORY_BYTES, 0):  # in memory, then read a batch at a time
        monkeypatch.setattr(data.folder, "FOLDER_IN_MEMORY_BYTES", limit)
        root = tmp_path / f"run{limit}"
        cli = tiny_cli(root, "cpu")
        cli[cli.index("--dstar-images") + 1] = "18"  # the whole test split
        assert main([*cli, *args]) == 0
        dstar = load_checkpoint(root / "user" / "dstar.pt")
        assert sorted(dstar["index"].tolist()) == list(range(18))
        assert set(dstar["y"][:3].tolist()) == {0, 1, 2}  # not 6 cats first
        assert set(read_json(root / "user" / "explain" / "explain.json")["true"]) == {0, 1, 2}
        results[limit] = read_json(root / "user" / "diagnosis.json")
    first, second = results.values()
    assert first == second


def _folder_args(tmp_path, folder, *extra):
    src = _rgb_model(tmp_path, RGB32)
    return [*tiny_cli(tmp_path / "run", "cpu"), "--layers", "conv,fc", "--dataset", "folder",
            "--data-dir", str(folder), "--model-file", f"{src}:build",
            "--checkpoint", str(tmp_path / "rgb.pt"), "--image-size", "32", *extra]


def _not_an_image(folder):
    (folder / "test" / "dog" / "notes.jpg").write_text("not a picture")
    return ["notes.jpg", "not a readable image"]


def _empty_class(folder):
    (folder / "train" / "yak").mkdir()
    return ["yak", "hold no PNG or JPEG images"]


def _truncated(folder):
    f = folder / "train" / "cat" / "0.png"
    f.write_bytes(f.read_bytes()[:30])
    return ["0.png", "not a readable image"]


@pytest.mark.parametrize("case", [_not_an_image, _empty_class, _truncated])
def test_a_bad_folder_is_refused_in_one_line_before_the_run_folder(tmp_path, shared_cache, monkeypatch,
                                                                   caplog, case):
    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    folder = write_folder(tmp_path / "pets")
    needles = case(folder)
    _one_error(caplog, main(_folder_args(tmp_path, folder)), *needles)
    assert not (tmp_path / "run").exists()


def test_a_folder_smaller_than_a_fit_batch_is_refused_up_front(tmp_path, shared_cache, monkeypatch, caplog):
    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    folder = write_folder(tmp_path / "pets", n=(2, 4))  # 6 training images
    args = _folder_args(tmp_path, folder, "--set", "fit.batch_size=8")
    _one_error(caplog, main(args), "holds 6 image(s)", "fit.batch_size 8", "fit.batch_size=N")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="fill no batch"):
        from interpretgan.fitting import _stream

        next(_stream(data.load_folder("train", 32, folder, cache_dir=tmp_path), 8, 0, 0))


def test_an_image_size_beyond_memory_is_refused_before_any_work(tmp_path, shared_cache, monkeypatch, caplog):
    monkeypatch.setenv("INTERPRETGAN_CACHE", str(shared_cache))
    folder = write_folder(tmp_path / "pets")
    args = _folder_args(tmp_path, folder)
    args[args.index("--image-size") + 1] = "100000"
    caplog.set_level(logging.INFO)
    _one_error(caplog, main(args), "100000 px", "GiB", "--image-size")
    assert not (tmp_path / "run").exists()
