"""The main job: ``interpretgan run``.

Stages (each cached under ``RUN/stages/<name>.json`` with a key of its inputs; a stage whose
key is unchanged and whose outputs exist is skipped, a stage whose inputs changed is redone
from scratch, a killed stage resumes from its own checkpoints)::

    train:natural, train:adversarially_trained      classifiers      RUN/<model>/checkpoints/final.pt
    dstar:<model>     PGD-40 adversarial test set (every step, every sample)  RUN/<model>/dstar.pt
    fit:<model>       InterpretGAN generators per layer                        RUN/<model>/fit/
    diagnose:<model>  Acc_i / Vul_i, max-pool change, misclassification        RUN/<model>/diagnosis.json
    explain:<model>   explanation grid + Captum baselines                      RUN/<model>/explain/
    report            RUN/results.json, RUN/report/index.html (pure function of the above)

A user's own classifier (``--model-file file.py:build --checkpoint my.pt``) replaces the two
trained models by that one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import logging
import shutil
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from .config import FIT_PRESETS, TRAIN_PRESETS, DataConfig, FitConfig, RunConfig, merge
from .devices import resolve_device
from .runs import load_checkpoint, read_json, save_checkpoint, write_json, to_json

log = logging.getLogger(__name__)

MODEL_KEYS = ("natural", "adversarially_trained")


def _key(obj) -> str:
    return hashlib.sha256(to_json(obj).encode()).hexdigest()[:16]


class Stages:
    """Runs named stages once per input key; records timings in ``stages/<name>.json``."""

    def __init__(self, root: Path):
        self.dir = root / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = {}
        self.ran: list[str] = []

    def _path(self, name: str) -> Path:
        return self.dir / (name.replace(":", "__") + ".json")

    def key(self, name: str) -> str | None:
        """The input key stage ``name`` last ran (or is running) with; None if it never ran."""
        path = self._path(name)
        return read_json(path).get("key") if path.exists() else None

    def run(self, name: str, inputs, outputs: list[Path], fn: Callable[[], object],
            clean: list[Path] = ()) -> str:
        """Run ``fn`` unless stage ``name`` finished with the same ``inputs``. Returns the key."""
        key = _key(inputs)
        rec = read_json(self._path(name)) if self._path(name).exists() else None
        if rec and rec.get("key") == key and rec.get("done") and all(p.exists() for p in outputs):
            self.timings[name] = rec.get("seconds", 0.0)
            log.info("stage %s: cached", name)
            return key
        if rec and rec.get("key") != key:
            log.info("stage %s: inputs changed, redoing it", name)
            for p in clean:
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
        prev = rec.get("seconds", 0.0) if rec and rec.get("key") == key else 0.0
        write_json(self._path(name), {"key": key, "done": False, "seconds": prev})
        t0 = time.perf_counter()
        log.info("stage %s: running", name)
        fn()
        seconds = prev + time.perf_counter() - t0
        write_json(self._path(name), {"key": key, "done": True, "seconds": seconds})
        self.timings[name] = seconds
        self.ran.append(name)
        return key


def load_model_file(spec: str) -> nn.Module:
    """``"path/to/file.py:build"`` → the module returned by ``build()``."""
    path, _, fn = spec.partition(":")
    if not fn:
        raise ValueError(f"--model-file needs FILE.py:FUNCTION, got {spec!r}")
    s = importlib.util.spec_from_file_location(f"user_model_{_key(path)}", path)
    if s is None or s.loader is None:
        raise FileNotFoundError(f"cannot import {path}")
    mod = importlib.util.module_from_spec(s)
    s.loader.exec_module(mod)
    if not hasattr(mod, fn):
        raise ValueError(f"{path} has no function {fn!r}")
    return getattr(mod, fn)()


def run_main(cfg: RunConfig, root: str | Path, model_file: str | None = None,
             checkpoint: str | None = None, progress: bool = True,
             device: str | torch.device | None = "auto") -> dict:
    """Run every stage of the main job into ``root`` on ``device`` (``"auto"``: a GPU if there
    is one); returns ``results.json``'s content. The device is no stage's input: a run
    started on one device resumes on another."""
    from .report import write_main_report

    dev = resolve_device(device)  # fail before anything is written on a bad name
    if model_file and checkpoint is None:
        raise ValueError("--model-file needs --checkpoint")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "config.json", {"run": dataclasses.asdict(cfg), "model_file": model_file,
                                      "checkpoint": checkpoint})
    st = Stages(root)
    t_all = time.perf_counter()
    if model_file:
        models = {"user": _user_model(st, root, cfg, model_file, checkpoint)}
    else:
        models = {key: _train_one(st, root, cfg, key, preset, dev, progress)
                  for key, preset in (("natural", cfg.natural), ("adversarially_trained", cfg.adversarial))}
    fit_cfg = merge(FIT_PRESETS.get(cfg.fit), {"seed": cfg.seed, **cfg.fit_overrides})
    diagnoses = {key: _diagnose_one(st, key, run, cfg, fit_cfg, dev, progress)
                 for key, run in models.items()}
    total = time.perf_counter() - t_all
    results = assemble_results(root, diagnoses, st.timings, cfg, total)
    write_json(root / "results.json", results)
    write_main_report(results, root)
    return results


def _user_model(st: Stages, root: Path, cfg: RunConfig, model_file: str, checkpoint: str) -> Path:
    """Stage ``train:user``: the user's classifier saved as ``root/user/checkpoints/final.pt``
    (its file, weights and data config). Returns its run folder."""
    from .models import load_state_dict_strict

    net = load_model_file(model_file)
    ck = load_checkpoint(checkpoint)
    state = ck.get("state_dict", ck) if isinstance(ck, dict) else ck
    load_state_dict_strict(net, state, checkpoint)
    dest = root / "user" / "checkpoints" / "final.pt"
    path, _, fn = model_file.partition(":")

    def save():
        save_checkpoint(dest, {
            "model_file": f"{Path(path).resolve()}:{fn}", "state_dict": net.state_dict(),
            "config": {"data": dataclasses.asdict(DataConfig(dataset=cfg.dataset,
                                                             data_dir=cfg.data_dir))}})

    st.run("train:user", {"file": model_file, "checkpoint": str(checkpoint),
                          "sha": _key({k: v.sum().item() for k, v in net.state_dict().items()})},
           [dest], save)
    return root / "user"


def _train_one(st: Stages, root: Path, cfg: RunConfig, key: str, preset: str,
               device: torch.device, progress: bool) -> Path:
    """Stage ``train:<key>``: train one of the two classifiers on ``device``; returns its run
    folder."""
    from .training import train_classifier

    tcfg = merge(TRAIN_PRESETS.get(preset), {"seed": cfg.seed, "data.dataset": cfg.dataset,
                                             "data.data_dir": cfg.data_dir, **cfg.train_overrides})
    run = root / key
    st.run(f"train:{key}", dataclasses.asdict(tcfg), [run / "checkpoints" / "final.pt"],
           lambda: train_classifier(tcfg, run, progress=progress, device=device), clean=[run])
    return run


def _diagnose_one(st: Stages, key: str, run: Path, cfg: RunConfig, fit_cfg: FitConfig,
                  device: torch.device, progress: bool) -> dict:
    """Stages ``dstar:<key>``, ``fit:<key>``, ``diagnose:<key>``, ``explain:<key>`` for the
    classifier in ``run``, moved to ``device`` once. Returns its diagnosis."""
    from .data import checkpoint_data_config, load_split
    from .diagnose import build_dstar, diagnose_model, dstar_indices
    from .explain import explain_run
    from .fitting import fit_and_summarize, load_generators

    ckpt = run / "checkpoints" / "final.pt"
    model = _load_any(ckpt, device)
    if key == "user":
        data = DataConfig(dataset=cfg.dataset, data_dir=cfg.data_dir)
    else:
        data = checkpoint_data_config(ckpt, cfg.dataset, data_dir=cfg.data_dir)
    test = load_split(data, "test")
    trained = st.key(f"train:{key}")
    dpath = run / "dstar.pt"
    dkey = st.run(f"dstar:{key}", [trained, cfg.attack, cfg.dstar_images, cfg.seed], [dpath],
                  lambda: build_dstar(model, test, cfg.attack, cfg.dataset, cfg.dstar_images,
                                      cfg.seed, dpath, progress=progress))
    fit_dir = run / "fit"
    layers = list(cfg.layers) or None
    fkey = st.run(f"fit:{key}", [trained, dataclasses.asdict(fit_cfg), layers],
                  [fit_dir / "config.json", fit_dir / "summary.json"],
                  lambda: fit_and_summarize(model, data, fit_cfg, fit_dir, layers,
                                            dstar_indices=dstar_indices(test, cfg.dstar_images),
                                            progress=progress),
                  clean=[fit_dir])
    diag_path = run / "diagnosis.json"

    def diagnose():
        gans = {n: g.to(device) for n, g in load_generators(fit_dir, test.shape[0]).items()}
        write_json(diag_path, diagnose_model(model, gans, load_checkpoint(dpath), test.num_classes))

    st.run(f"diagnose:{key}", [dkey, fkey], [diag_path], diagnose)
    ex_dir = run / "explain"
    st.run(f"explain:{key}", [fkey, cfg.explain_images, cfg.attack], [ex_dir / "explain.json"],
           lambda: explain_run(run, cfg.explain_images, cfg.attack, data_dir=cfg.data_dir,
                               model=_load_any(ckpt, device), device=device))
    return read_json(diag_path)


def rebuild_report(root: str | Path) -> dict:
    """``results.json`` + ``report/index.html`` again from a finished run's saved artifacts
    (diagnoses, fit summaries, stage timings, figures): never trains or attacks."""
    from .config import from_dict
    from .report import write_main_report

    root = Path(root)
    saved = read_json(root / "config.json")
    cfg = from_dict(RunConfig, saved["run"])
    keys = ["user"] if saved.get("model_file") else list(MODEL_KEYS)
    missing = [k for k in keys if not (root / k / "diagnosis.json").exists()]
    if missing:
        raise FileNotFoundError(f"{root} has no diagnosis for {', '.join(missing)}: run the job first")
    diagnoses = {k: read_json(root / k / "diagnosis.json") for k in keys}
    timings = {p.stem.replace("__", ":"): read_json(p).get("seconds", 0.0)
               for p in sorted((root / "stages").glob("*.json"))}
    old = read_json(root / "results.json") if (root / "results.json").exists() else {}
    results = assemble_results(root, diagnoses, timings, cfg, old.get("wall_time_s", sum(timings.values())))
    write_json(root / "results.json", results)
    write_main_report(results, root)
    return results


def _load_any(ckpt: Path, device: str | torch.device = "cpu") -> nn.Module:
    """A zoo classifier or a user's (``model_file`` checkpoint), on ``device``, in eval mode."""
    from .models import load_classifier, load_state_dict_strict

    ck = load_checkpoint(ckpt)
    if isinstance(ck, dict) and "model_file" in ck:
        net = load_model_file(ck["model_file"])
        load_state_dict_strict(net, ck["state_dict"], str(ckpt))
        return net.to(device).eval()
    return load_classifier(ckpt, device=device)


def assemble_results(root: Path, diagnoses: dict, timings: dict, cfg: RunConfig, total: float) -> dict:
    """``results.json``: layers, one object per model, timings, figures (relative paths)."""
    first = next(iter(diagnoses.values()))
    out = {"layers": first["layers"], "layer_labels": first["layer_labels"],
           "config": dataclasses.asdict(cfg), "timings_s": timings, "wall_time_s": total,
           "budget": budget(root, timings),
           "paper": PAPER_TABLE1 if cfg.dataset == "mnist" else None}
    for key, d in diagnoses.items():
        summary = root / key / "fit" / "summary.json"
        out[key] = {
            "generators": read_json(summary) if summary.exists() else None,
            "clean_accuracy": d["clean_accuracy"], "adversarial_accuracy": d["adversarial_accuracy"],
            "n": d["n"], "attack": d["attack"],
            "per_layer": {p["layer"]: {k: v for k, v in p.items() if k != "layer"} for p in d["per_layer"]},
            "maxpool_index_change": d["maxpool_index_change"],
            "misclassification": d["misclassification"], "top_targets": d["top_targets"],
            "figures": {"explanations": f"{key}/explain/explanations.png",
                        "baselines": f"{key}/explain/baselines.png"},
        }
    return out


def budget(root: Path, timings: dict[str, float]) -> dict | None:
    """The run's cost in units of one natural training epoch measured in this run (the median
    of the natural model's per-epoch step times): issue 5's "≤ 40 epochs" bound."""
    from .runs import read_jsonl

    rows = read_jsonl(root / "natural" / "metrics.jsonl") if (root / "natural" / "metrics.jsonl").exists() else []
    epochs = sorted(r["train_s"] for r in rows if "train_s" in r)
    if not epochs:
        return None
    unit = epochs[len(epochs) // 2]
    total = sum(timings.values())
    return {"natural_epoch_s": unit, "stages_s": total, "epoch_units": total / unit,
            "per_stage_units": {k: v / unit for k, v in timings.items()}}


# Table 1 and Section 5.2 of the paper, for the report.
PAPER_TABLE1 = {
    "natural": {"acc": [52.6, 26.3, 21.6, 9.9, 4.3, 3.0, 3.5],
                "vul": [47.4, 26.3, 4.7, 11.7, 5.6, 1.3, -0.5]},
    "adversarially_trained": {"acc": [95.1, 94.0, 93.9, 92.6, 90.1, 90.0, 89.5],
                              "vul": [4.9, 1.1, 0.1, 1.3, 2.5, 0.1, 0.5]},
    "maxpool_index_change": [40.9, 18.1],
    "top_targets": {"0": [6, 39.3], "7": [3, 39.5]},
}
