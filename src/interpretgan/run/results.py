"""``results.json`` and the report from a run's saved artifacts: per-layer Acc_i/Vul_i with
each layer's generator quality, the paper's reference numbers, the run's wall time and its
cost in natural-epoch units."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path


from ..paper import PAPER_TABLE1
from ..report.html import write_main_report
from .config import RunConfig
from .stages import MODEL_KEYS, _RECORD, _RECORD_OPTIONAL, _stage_fix, read_record
from ..runtime.runs import RunLock, read_json, read_jsonl, write_json
from ..settings import from_dict


class _WallClock:
    """Wall time of a run folder over all the invocations that worked in it
    (``RUN/wall_time.json``; an invocation counts up to its last :meth:`tick`, which comes
    after every stage: a killed invocation loses the time of the stage it was in)."""

    def __init__(self, root: Path):
        self.path = root / "wall_time.json"
        self.before = wall_time(root) or 0.0
        self.t0 = time.perf_counter()

    def tick(self) -> float:
        total = self.before + time.perf_counter() - self.t0
        write_json(self.path, {"seconds": total})
        return total


def wall_time(root: Path) -> float | None:
    """The seconds ``RUN/wall_time.json`` holds (None without one; a damaged one: one line)."""
    path = root / "wall_time.json"
    if not path.exists():
        return None
    return read_record(path, {"seconds": (int, float)},
                       "delete it and rerun the same command (the run's wall time then counts "
                       "from there)")["seconds"]


def rebuild_report(root: str | Path) -> dict:
    """``results.json`` + ``report/index.html`` again from a finished run's saved artifacts
    (diagnoses, fit summaries, stage timings, figures): never trains or attacks."""

    root = Path(root)
    if not (root / "config.json").exists():
        raise FileNotFoundError(f"{root} is not a run folder of `interpretgan run` (no config.json)")
    saved = read_json(root / "config.json")
    if "run" not in saved:
        raise ValueError(f"{root} is not a run folder of `interpretgan run` (its config.json holds no run "
                         f"settings; `interpretgan train` folders have no report)")
    cfg = from_dict(RunConfig, saved["run"])
    keys = ["user"] if saved.get("model_file") else list(MODEL_KEYS[: 1 if cfg.adversarial is None else 2])
    missing = [k for k in keys if not (root / k / "diagnosis.json").exists()]
    if missing:
        raise FileNotFoundError(f"{root} has no diagnosis for {', '.join(missing)}: run the job first")
    diagnoses = {k: read_json(root / k / "diagnosis.json") for k in keys}
    timings = {}
    for p in sorted((root / "stages").glob("*.json")):
        name = p.stem.replace("__", ":")
        timings[name] = read_record(p, _RECORD, _stage_fix(name), _RECORD_OPTIONAL).get("seconds", 0.0)
    total = wall_time(root)
    total = sum(timings.values()) if total is None else total
    with RunLock(root):
        results = assemble_results(root, diagnoses, timings, cfg, total)
        write_json(root / "results.json", results)
        write_main_report(results, root)
    return results


def assemble_results(root: Path, diagnoses: dict, timings: dict, cfg: RunConfig, total: float) -> dict:
    """``results.json``: layers, one object per model, timings, figures (relative paths)."""
    first = next(iter(diagnoses.values()))
    out = {"layers": first["layers"], "layer_labels": first["layer_labels"],
           "config": dataclasses.asdict(cfg), "timings_s": timings, "wall_time_s": total,
           "budget": budget(root, timings), "classes": first.get("classes"),
           # the paper's Table 1 is for its MNIST SmallCNN: ours, not a user's model
           "paper": PAPER_TABLE1 if cfg.dataset == "mnist" and "user" not in diagnoses else None}
    for key, d in diagnoses.items():
        summary = root / key / "fit" / "summary.json"
        gen = read_json(summary) if summary.exists() else None
        reliable = (gen or {}).get("reliable", {})  # per layer: every seed at the agreement floor
        out[key] = {
            "generators": gen, "agreement_floor": (gen or {}).get("agreement_floor"),
            "clean_accuracy": d["clean_accuracy"], "adversarial_accuracy": d["adversarial_accuracy"],
            "n": d["n"], "attack": d["attack"], "generator_seeds": d.get("generator_seeds", 1),
            "output": d.get("output"),  # how its logits were read from its forward's output
            "per_layer": _per_layer(d, root / key / "fit" / "config.json", reliable),
            "maxpool_index_change": d["maxpool_index_change"],
            "misclassification": d["misclassification"], "top_targets": d["top_targets"],
            "figures": {"explanations": f"{key}/explain/explanations.png",
                        "baselines": f"{key}/explain/baselines.png"},
        }
    return out


def _per_layer(diagnosis: dict, fit_config: Path, reliable: dict) -> dict:
    """A diagnosis's per-layer rows keyed by layer, each with ``layer_reading``: how the fit's
    C read the layer's output (shape, conv map / vector / token grid / flat, prefix tokens),
    and ``reliable`` where the fit judged its generators against the agreement floor."""
    readings = read_json(fit_config).get("readings", {}) if fit_config.exists() else {}
    return {p["layer"]: {**{k: v for k, v in p.items() if k != "layer"},
                         "layer_reading": readings.get(p["layer"]),
                         **({"reliable": reliable[p["layer"]]} if p["layer"] in reliable else {})}
            for p in diagnosis["per_layer"]}


def budget(root: Path, timings: dict[str, float]) -> dict | None:
    """The run's cost in units of one natural training epoch measured in this run (the middle
    of the natural model's sorted per-epoch step times; for an even count the upper of the two
    middle ones): the quick preset's "≤ 40 natural epochs" budget."""

    rows = read_jsonl(root / "natural" / "metrics.jsonl") if (root / "natural" / "metrics.jsonl").exists() else []
    epochs = sorted(r["train_s"] for r in rows if "train_s" in r)
    if not epochs:
        return None
    unit = epochs[len(epochs) // 2]
    total = sum(timings.values())
    return {"natural_epoch_s": unit, "stages_s": total, "epoch_units": total / unit,
            "per_stage_units": {k: v / unit for k, v in timings.items()}}
