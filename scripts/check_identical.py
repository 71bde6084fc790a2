"""Run the tiny main job and a tiny ``fit`` into a folder and print the SHA-256 of what they
wrote, so two versions of the package can be compared output for output.

    PYTHONPATH=src python scripts/check_identical.py OUT_DIR [--compare DIGESTS.json]

Writes ``OUT_DIR/digests.json``. Fields that hold wall-clock times (keys ending in ``_s`` or
``_seconds``, or named in ``TIMING_KEYS``: ``timings_s``, ``wall_time_s``, ``budget``,
``fit_seconds``, the stage manifests' mtimes, ``wall_time.json``) are removed before hashing,
and ``OUT_DIR``'s path is replaced by ``<OUT>`` in every string; checkpoints (``.pt``) are
hashed by their tensors and plain values, not by their pickled bytes. Reports, figures and
logs (``.html``, ``.png``, ``.log``) are not compared. Needs MNIST in the cache (as the tests do).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sys
from pathlib import Path

import torch

TIMING_KEYS = {"seconds", "budget", "timestamp", "time"}  # and every key ending in _s or _seconds
TINY_TRAIN = {"epochs": 1, "lr_milestones": (), "data.train_subset": 256, "data.test_subset": 200,
              "batch_size": 64, "eval_attack": None, "lr": 0.05}
TINY_FIT = {"code_dim": 8, "g_channels": (8, 8, 8, 8), "d_channels": (8, 8, 8, 8), "c_width_mult": 0.25,
            "steps_per_scale": (1, 1, 1, 3), "batch_size": 16, "train_subset": 128, "eval_images": 32,
            "generator_seeds": (0,)}
LAYERS = ("feature_extractor.pool2", "classifier.fc3")


def _timing(key) -> bool:
    return isinstance(key, str) and (key in TIMING_KEYS or key.endswith(("_s", "_seconds")))


def _strip(obj):
    if isinstance(obj, dict):
        if "outputs" in obj and "key" in obj:  # a stage manifest: (size, mtime, sha) per file
            # The files are hashed themselves; a key hashes its inputs' bytes, and a checkpoint's
            # bytes hold its wall times, so keys are checked by resuming instead (--resume).
            obj = {k: v for k, v in obj.items() if k != "key"} | {"outputs": sorted(obj["outputs"])}
        return {k: _strip(v) for k, v in obj.items() if not _timing(k)}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _tensor_digest(obj, h) -> None:
    if isinstance(obj, torch.Tensor):
        h.update(str((obj.dtype, tuple(obj.shape))).encode())
        h.update(obj.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if obj.numel() else b"")
    elif isinstance(obj, dict):
        for k in obj:
            if _timing(k):
                continue
            h.update(repr(k).encode())
            _tensor_digest(obj[k], h)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _tensor_digest(v, h)
    elif isinstance(obj, str):
        h.update(repr(obj.replace(ROOT[0], "<OUT>")).encode())
    elif isinstance(obj, (int, float, bool, type(None))):
        h.update(repr(obj).encode())
    else:
        h.update(type(obj).__name__.encode())


ROOT = [""]  # the output folder, replaced by <OUT> in every string hashed


def _text(path: Path) -> str:
    return path.read_text().replace(json.dumps(ROOT[0])[1:-1], "<OUT>")


def digest(path: Path) -> str:
    if path.suffix == ".json":
        data = _strip(json.loads(_text(path)))
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    if path.suffix == ".jsonl":
        rows = [_strip(json.loads(line)) for line in _text(path).splitlines() if line.strip()]
        return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
    if path.suffix == ".pt":
        h = hashlib.sha256()
        _tensor_digest(torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=False), h)
        return h.hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_digests(root: Path, skip=(".lock",)) -> dict[str, str]:
    return {str(p.relative_to(root)): digest(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in skip and p.name != "wall_time.json" and p.suffix not in {".html", ".png", ".log"}}


def tiny_config():
    from interpretgan.config import RunConfig

    return RunConfig(train_overrides=TINY_TRAIN, fit_overrides=TINY_FIT, attack="pgd-2",
                     dstar_images=40, explain_images=2, layers=LAYERS)


def resume(finished: Path, out: Path) -> int:
    """Resume a copy of ``finished`` (mtimes kept): every stage must be served from the cache."""
    import logging
    import shutil

    from interpretgan.pipeline import run_main

    ran = []

    class Catch(logging.Handler):
        def emit(self, record):
            msg = record.getMessage()
            if msg.startswith("stage ") and msg.endswith(": running"):
                ran.append(msg.split()[1])

    logging.getLogger("interpretgan").addHandler(Catch())
    logging.getLogger("interpretgan").setLevel(logging.INFO)
    dest = out / "resumed"
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(finished, dest)
    before = (dest / "results.json").read_bytes()
    run_main(tiny_config(), dest, progress=False, device="cpu")
    same = _strip(json.loads((dest / "results.json").read_bytes())) == _strip(json.loads(before))
    print("stages redone:", ran or "none", "| results.json same (timing keys removed):", same)
    return 0 if not ran and same else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--compare", type=Path, help="digests.json of a reference run")
    ap.add_argument("--resume", type=Path, help="a finished tiny run folder (made by any version): "
                    "copy it, resume it, and fail if any stage runs again")
    args = ap.parse_args(argv)
    if args.resume:
        return resume(args.resume, args.out)
    os.environ.setdefault("INTERPRETGAN_OFFLINE", "1")
    torch.set_num_threads(2)
    ROOT[0] = str(args.out.resolve())
    from interpretgan.config import FitConfig, merge
    from interpretgan.fitting import fit_run
    from interpretgan.pipeline import run_main

    torch.manual_seed(0)
    run = args.out / "run"
    run_main(tiny_config(), run, progress=False, device="cpu")
    torch.manual_seed(0)
    ckpt = run / "natural" / "checkpoints" / "final.pt"
    fit_cfg = merge(FitConfig(), TINY_FIT)
    fit_run(ckpt, args.out / "fit", fit_cfg, layers=LAYERS, progress=False, device="cpu",
            dstar_images=40)
    out = {"run/results.json": digest(run / "results.json"),
           "run": folder_digests(run), "fit": folder_digests(args.out / "fit")}
    (args.out / "digests.json").write_text(json.dumps(out, indent=1, sort_keys=True))
    print("results.json (timing keys removed):", out["run/results.json"])
    print("files hashed: run", len(out["run"]), "fit", len(out["fit"]))
    if args.compare:
        ref = json.loads(args.compare.read_text())
        bad = [k for part in ("run", "fit") for k in sorted(set(ref[part]) | set(out[part]))
               if ref[part].get(k) != out[part].get(k)]
        if ref["run/results.json"] != out["run/results.json"]:
            bad.insert(0, "run/results.json")
        print("IDENTICAL" if not bad else "DIFFERENT: " + ", ".join(bad))
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
