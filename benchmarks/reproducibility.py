"""How far Acc_i moves when the same fit is run again: the generators of a finished main run's
natural model, refitted with the default settings (stacked members, bf16 autocast where the
CPU has it) twice in one process and once on two CPU ranks, each diagnosed on the run's own
D*.

    python benchmarks/reproducibility.py --run runs/main --out runs/repro --json docs/reproducibility.json

Each fit is what ``interpretgan fit --checkpoint RUN/natural/checkpoints/final.pt`` does with
the run's fit settings (``RUN/config.json``'s fit preset, overrides and layers): ``a`` and
``b`` are the same command run twice, ``ranks2`` the same command with ``--devices 2`` (two
gloo processes, one thread each). The run's own fit (``RUN/natural/fit``) is a fourth
repetition. Every fit is diagnosed with ``diagnose_model`` on ``RUN/natural/dstar.pt``.
Resumable: a finished fit or diagnosis is reused.

The JSON holds, per repetition, Acc_i per layer (mean over the generator seeds) and each
seed's, and per layer the largest difference between any two repetitions.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import torch

from interpretgan.diagnosis.diagnose import diagnose_model
from interpretgan.fitting import load_generators
from interpretgan.pipeline import load_any
from interpretgan.runs import load_checkpoint, read_json, write_json

log = logging.getLogger("reproducibility")
REPEATS = {"a": [], "b": [], "ranks2": ["--devices", "2", "--device", "cpu"]}


def fit_command(run: Path, out: Path, extra: list[str]) -> list[str]:
    """``interpretgan fit`` for the run's natural model with the run's fit settings."""
    cfg = read_json(run / "config.json")["run"]
    cmd = [sys.executable, "-m", "interpretgan", "-q", "fit", "--checkpoint",
           str(run / "natural" / "checkpoints" / "final.pt"), "--preset", cfg["fit"],
           "--seed", str(cfg["seed"]), "--run-dir", str(out)]
    if cfg["layers"]:  # empty: the model's default layers, as the run took them
        cmd += ["--layers", ",".join(cfg["layers"])]
    for key, value in cfg["fit_overrides"].items():
        if key == "generator_seeds":
            cmd += ["--generator-seeds", str(len(value))]
        else:
            cmd += ["--set", f"{key}={value}"]
    return cmd + extra


def diagnose(run: Path, fit_dir: Path, done: Path) -> dict:
    """Acc_i on the run's D* for the generators in ``fit_dir`` (cached in ``done``)."""
    if done.exists():
        return read_json(done)
    model = load_any(run / "natural" / "checkpoints" / "final.pt", torch.device("cpu"))
    dstar = load_checkpoint(run / "natural" / "dstar.pt")
    gans = load_generators(fit_dir, dstar["x"].shape[1])
    doc = diagnose_model(model, gans, dstar, 10)
    write_json(done, doc)
    return doc


def spread(docs: dict[str, dict]) -> dict[str, float]:
    """Per layer, the largest |Acc_i(r) − Acc_i(s)| over pairs of repetitions (points of %)."""
    layers = [r["layer"] for r in next(iter(docs.values()))["per_layer"]]
    acc = {name: {r["layer"]: r["acc"] for r in d["per_layer"]} for name, d in docs.items()}
    return {n: 100 * max(abs(acc[r][n] - acc[s][n]) for r, s in itertools.combinations(acc, 2))
            for n in layers}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=Path, default=Path("runs/main"), help="a finished main run")
    p.add_argument("--out", type=Path, default=Path("runs/repro"))
    p.add_argument("--json", type=Path)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    docs = {"run": diagnose(a.run, a.run / "natural" / "fit", a.out / "run.diagnosis.json")}
    for name, extra in REPEATS.items():
        fit_dir = a.out / name
        if not (fit_dir / "fit" / "summary.json").exists():
            cmd = fit_command(a.run, fit_dir, extra)
            log.info("%s", " ".join(cmd))
            subprocess.run(cmd, check=True, env=os.environ.copy())
        docs[name] = diagnose(a.run, fit_dir / "fit", a.out / f"{name}.diagnosis.json")
    result = {
        "run": str(a.run), "torch": torch.__version__,
        "layer_labels": read_json(a.run / "results.json")["layer_labels"],
        "repetitions": {name: {"command": "run's own fit" if name == "run" else
                               " ".join(["interpretgan fit", "…", *REPEATS[name]]),
                               "acc": {r["layer"]: r["acc"] for r in d["per_layer"]},
                               "acc_seeds": {r["layer"]: r.get("acc_seeds") for r in d["per_layer"]}}
                        for name, d in docs.items()},
        "max_difference_points": spread(docs),
    }
    print(json.dumps(result["max_difference_points"], indent=2))
    if a.json:
        write_json(a.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
