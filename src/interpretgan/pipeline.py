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
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from .config import FIT_PRESETS, TRAIN_PRESETS, DataConfig, RunConfig, merge
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


def build_dstar(model: nn.Module, test_set, attack: str, dataset: str, n: int | None, seed: int,
                path: Path, batch_size: int = 500, progress: bool = True) -> dict:
    """D*: ``attack`` on the first ``n`` test images of a fixed permutation, every step on every
    sample. Saves ``{"x", "x_adv", "y", "pred_clean", "pred_adv"}`` (uint8 images, atomically)."""
    from tqdm.auto import tqdm

    from .attacks import eval_mode, get_attack
    from .data import batches, num_batches

    ds = test_set.subset(n, seed=0) if n is not None else test_set
    atk = get_attack(attack, dataset)
    gen = torch.Generator().manual_seed(seed)
    xs, advs, ys, pc, pa = [], [], [], [], []
    for x, y in tqdm(batches(ds, batch_size), total=num_batches(ds, batch_size), disable=not progress,
                     desc=f"D* {attack}", leave=False):
        xa = atk(model, x, y, early_stop=False, generator=gen)
        with torch.no_grad(), eval_mode(model):
            pc.append(model(x).argmax(1))
            pa.append(model(xa).argmax(1))
        xs.append(x)
        advs.append(xa)
        ys.append(y)
    doc = {"x": torch.cat(xs), "x_adv": torch.cat(advs), "y": torch.cat(ys),
           "pred_clean": torch.cat(pc), "pred_adv": torch.cat(pa), "attack": attack}
    save_checkpoint(path, doc)
    return doc


def diagnose_model(model: nn.Module, gans: dict, dstar: dict, num_classes: int) -> dict:
    """Everything Section 5 reports for one model, as plain JSON."""
    from .diagnose import (large_vulnerability, layer_accuracy, maxpool_index_change,
                           misclassification_table, top_targets, vulnerability)
    from .fitting import agreement
    from .layers import layer_labels

    x, xa, y = dstar["x"], dstar["x_adv"], dstar["y"]
    names = list(gans)
    acc_adv = layer_accuracy(model, gans, xa, y)
    acc_nat = layer_accuracy(model, gans, x, y)
    agree = agreement(model, gans, x, x.shape[-1])
    accs = [acc_adv[n] for n in names]
    vul = vulnerability(accs)
    vul_nat = vulnerability([acc_nat[n] for n in names])
    marked = large_vulnerability(vul)
    table = misclassification_table(y, dstar["pred_adv"], num_classes)
    return {
        "layers": names, "layer_labels": layer_labels(model, names),
        "clean_accuracy": (dstar["pred_clean"] == y).float().mean().item(),
        "adversarial_accuracy": (dstar["pred_adv"] == y).float().mean().item(),
        "n": len(y), "attack": dstar["attack"],
        "per_layer": [{"layer": n, "acc": acc_adv[n], "vul": v, "large_vul": m,
                       "acc_natural": acc_nat[n], "vul_natural": vn, "agreement_natural": agree[n]}
                      for n, v, m, vn in zip(names, vul, marked, vul_nat)],
        "maxpool_index_change": maxpool_index_change(model, x, xa),
        "misclassification": table.tolist(),
        "top_targets": top_targets(table),
    }


def run_main(cfg: RunConfig, root: str | Path, model_file: str | None = None,
             checkpoint: str | None = None, progress: bool = True) -> dict:
    """Run every stage of the main job into ``root``; returns ``results.json``'s content."""
    from .evaluate import checkpoint_data_config
    from .explain import explain_run
    from .fitting import fit_generators, load_generators, quality_summary
    from .models import load_state_dict_strict
    from .report import write_main_report
    from .training import load_split, train_classifier

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "config.json", {"run": dataclasses.asdict(cfg), "model_file": model_file,
                                      "checkpoint": checkpoint})
    st = Stages(root)
    t_all = time.perf_counter()
    models: dict[str, Path] = {}
    if model_file:
        if checkpoint is None:
            raise ValueError("--model-file needs --checkpoint")
        net = load_model_file(model_file)
        ck = load_checkpoint(checkpoint)
        state = ck.get("state_dict", ck) if isinstance(ck, dict) else ck
        load_state_dict_strict(net, state, checkpoint)
        d = root / "user" / "checkpoints"
        dest = d / "final.pt"
        st.run("train:user", {"file": model_file, "checkpoint": str(checkpoint),
                              "sha": _key({k: v.sum().item() for k, v in net.state_dict().items()})},
               [dest], lambda: save_checkpoint(dest, {
                   "model_file": str(Path(model_file.partition(":")[0]).resolve()) + ":"
                   + model_file.partition(":")[2], "state_dict": net.state_dict(),
                   "config": {"data": dataclasses.asdict(DataConfig(
                       dataset=cfg.dataset, data_dir=cfg.data_dir))}}))
        models["user"] = root / "user"
    else:
        for key, preset in (("natural", cfg.natural), ("adversarially_trained", cfg.adversarial)):
            tcfg = merge(TRAIN_PRESETS.get(preset), {"seed": cfg.seed, "data.dataset": cfg.dataset,
                                                     "data.data_dir": cfg.data_dir, **cfg.train_overrides})
            run = root / key
            st.run(f"train:{key}", dataclasses.asdict(tcfg), [run / "checkpoints" / "final.pt"],
                   lambda tcfg=tcfg, run=run: train_classifier(tcfg, run, progress=progress),
                   clean=[run])
            models[key] = run
    fit_cfg = merge(FIT_PRESETS.get(cfg.fit), {"seed": cfg.seed, **cfg.fit_overrides})
    diagnoses = {}
    for key, run in models.items():
        ckpt = run / "checkpoints" / "final.pt"
        model = _load_any(ckpt)
        data = checkpoint_data_config(ckpt, cfg.dataset, data_dir=cfg.data_dir) if key != "user" else \
            DataConfig(dataset=cfg.dataset, data_dir=cfg.data_dir)
        test = load_split(data, "test")
        up = read_json(st._path(f"train:{key}"))["key"]
        dpath = run / "dstar.pt"
        dkey = st.run(f"dstar:{key}", [up, cfg.attack, cfg.dstar_images, cfg.seed], [dpath],
                      lambda: build_dstar(model, test, cfg.attack, cfg.dataset, cfg.dstar_images,
                                          cfg.seed, dpath, progress=progress))
        fit_dir = run / "fit"
        layers = list(cfg.layers) or None

        def do_fit(model=model, data=data, fit_dir=fit_dir, layers=layers, test=test):
            train = load_split(data, "train")
            if fit_cfg.train_subset is not None:
                train = train.subset(fit_cfg.train_subset, seed=fit_cfg.seed)
            # held-out images for the running agreement: the test images outside D*
            ex = test.images[-min(fit_cfg.eval_images, 1000):].float() / 255
            t0 = time.perf_counter()
            fit_generators(model, train, ex, fit_cfg, fit_dir, layers, progress=progress)
            seconds = time.perf_counter() - t0
            gans = load_generators(fit_dir, test.shape[0])
            write_json(fit_dir / "summary.json", quality_summary(
                model, gans, data, test, min(fit_cfg.eval_images, 1000), seconds))

        fkey = st.run(f"fit:{key}", [up, dataclasses.asdict(fit_cfg), layers],
                      [fit_dir / "config.json", fit_dir / "summary.json"], do_fit, clean=[fit_dir])
        diag_path = run / "diagnosis.json"
        st.run(f"diagnose:{key}", [dkey, fkey], [diag_path], lambda model=model, run=run, dpath=dpath,
               test=test, diag_path=diag_path: write_json(diag_path, diagnose_model(
                   model, load_generators(run / "fit", test.shape[0]), load_checkpoint(dpath),
                   _num_classes(test))))
        ex_dir = run / "explain"
        st.run(f"explain:{key}", [fkey, cfg.explain_images, cfg.attack], [ex_dir / "explain.json"],
               lambda run=run: explain_run(run, cfg.explain_images, cfg.attack, data_dir=cfg.data_dir,
                                           model=_load_any(run / "checkpoints" / "final.pt")))
        diagnoses[key] = read_json(diag_path)
    total = time.perf_counter() - t_all
    results = assemble_results(root, diagnoses, st.timings, cfg, total)
    write_json(root / "results.json", results)
    write_main_report(results, root)
    return results


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


def _num_classes(ds) -> int:
    return ds.num_classes


def _load_any(ckpt: Path) -> nn.Module:
    from .models import load_classifier

    ck = load_checkpoint(ckpt)
    if isinstance(ck, dict) and "model_file" in ck:
        from .models import load_state_dict_strict

        net = load_model_file(ck["model_file"])
        load_state_dict_strict(net, ck["state_dict"], str(ckpt))
        return net.eval()
    return load_classifier(ckpt)


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
