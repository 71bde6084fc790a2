"""Streaming an image folder from disk: peak memory and images/s at 224 px.

    python benchmarks/folder_stream.py --images 20000 --out docs/folder_stream.json

Writes a folder data set of ``--images`` training JPEGs (and a tenth as many test JPEGs) of
``--side`` px in ``--classes`` class folders (smooth random colour fields, quick to write),
then, in a fresh process so that its peak RSS is the reading's alone, measures:

* the listing (file names, sizes and mtimes: what the stage keys' digest reads) and the
  header scan (every file opened once; cached afterwards),
* a full pass of the training split at ``--image-size`` in batches of 128, with the decoding
  threads and with one thread,
* a fit-like pass (the fit's endless shuffled batches of 32 over the whole split: random
  access) and a D*-like pass (D*'s draw of 1,000 test images in batches of 500),

and the resident memory (VmRSS) after each tenth of the full pass, to show it stays flat.
The folder is deleted afterwards (``--keep`` keeps it). Prints and writes one JSON.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_folder(root: Path, images: int, classes: int, side: int, seed: int = 0) -> float:
    """``root/{train,test}/class_k/*.jpg``; returns the seconds it took."""
    from PIL import Image

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    for split, n in (("train", images), ("test", max(classes, images // 10))):
        for k in range(classes):
            d = root / split / f"class_{k:02d}"
            d.mkdir(parents=True)
            for i in range(n // classes):
                small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                small[..., k % 3] //= 2  # a faint tint per class
                im = Image.fromarray(small).resize((side, side), Image.BILINEAR)
                im.save(d / f"{i:06d}.jpg", quality=90)
    return time.perf_counter() - t0


def rss_mib() -> float:
    """This process's resident memory now (VmRSS), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed_pass(it, total_images: int, marks: int = 10) -> dict:
    """Consume batches ``(x, y)`` of ``it``; images/s and VmRSS after each ``1/marks``."""
    t0 = time.perf_counter()
    seen, rss, next_mark = 0, [], total_images / marks
    for x, _ in it:
        seen += len(x)
        float(x[:, :, 0, 0].sum())  # touch the batch
        if seen >= next_mark:
            rss.append(round(rss_mib(), 1))
            next_mark += total_images / marks
    sec = time.perf_counter() - t0
    return {"images": seen, "seconds": round(sec, 2), "images_per_s": round(seen / sec, 1),
            "rss_mib_during": rss}


def measure(folder: Path, image_size: int, cache: Path) -> dict:
    """Everything after the folder is written (run in a fresh process)."""
    import torch

    from interpretgan import data
    from interpretgan.data import folder as data_folder
    from interpretgan.diagnosis.diagnose import dstar_indices
    from interpretgan.fitting import _stream

    torch.set_num_threads(os.cpu_count() or 1)
    out = {"rss_mib_after_imports": round(rss_mib(), 1)}
    t0 = time.perf_counter()
    listing = data.list_folder(folder)
    out["listing_seconds"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    mode = data.folder_mode(listing, cache)
    out["header_scan_seconds"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    train = data.load_folder("train", image_size, folder, cache_dir=cache)
    test = data.load_folder("test", image_size, folder, cache_dir=cache)
    out["load_seconds_after_scan"] = round(time.perf_counter() - t0, 2)
    out.update(mode=mode, train_images=len(train), test_images=len(test),
               streamed=type(train).__name__ == "FolderImages", decode_threads=data_folder._workers())
    out["in_memory_bytes_would_be"] = len(train) * 3 * image_size ** 2
    out["full_pass"] = timed_pass(data.batches(train, 128), len(train))
    workers = data_folder._workers
    data_folder._workers = lambda: 1
    out["full_pass_one_thread"] = timed_pass(data.batches(train, 128), len(train))
    data_folder._workers = workers
    steps = 200
    out["fit_like_pass"] = {"batch_size": 32, "steps": steps,
                            **timed_pass(itertools.islice(_stream(train, 32, 0, 0), steps), 32 * steps)}
    d = data.take(test, dstar_indices(test, min(1000, len(test))))
    out["dstar_like_pass"] = {"batch_size": 500, **timed_pass(data.batches(d, 500), len(d))}
    out["peak_rss_mib"] = round(peak_rss_mib(), 1)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=20000, help="training JPEGs (test: a tenth)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--side", type=int, default=256)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--dir", help="where to write the folder (default: a temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the folder")
    p.add_argument("--out", default="docs/folder_stream.json")
    p.add_argument("--measure", help=argparse.SUPPRESS)  # the child: FOLDER,CACHE
    a = p.parse_args()
    if a.measure:
        folder, cache = a.measure.split(",")
        print(json.dumps(measure(Path(folder), a.image_size, Path(cache))))
        return
    base = Path(a.dir or tempfile.mkdtemp(prefix="folder_stream_"))
    folder, cache = base / "images", base / "cache"
    try:
        wrote = write_folder(folder, a.images, a.classes, a.side)
        size = sum(f.stat().st_size for f in folder.rglob("*.jpg"))
        child = subprocess.run([sys.executable, __file__, "--image-size", str(a.image_size),
                                "--measure", f"{folder},{cache}"], capture_output=True, text=True,
                               check=True)
        res = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        if not a.keep:
            shutil.rmtree(base, ignore_errors=True)
    doc = {"command": "python benchmarks/folder_stream.py " + " ".join(sys.argv[1:]),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
                      f"(shared with other jobs while measured)",
           "folder": {"jpegs": a.images + max(a.classes, a.images // 10), "classes": a.classes,
                      "side": a.side, "bytes": size, "write_seconds": round(wrote, 1)},
           "image_size": a.image_size, **res,
           "peak_rss_under_3_gib": res["peak_rss_mib"] < 3 * 1024}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
