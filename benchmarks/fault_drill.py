"""Fault drill: SIGKILL a tiny ``interpretgan run`` at random moments, rerun the same command
each time, and check that the finished results equal an uninterrupted run's.

    python benchmarks/fault_drill.py --kills 20

1. One uninterrupted run into ``DIR/reference`` (its duration T sets the kill window).
2. Drill rounds: start the same command in ``DIR/drill-<r>``, kill it with SIGKILL after a
   random delay, start it again, …; a round ends when a start runs to completion. Rounds
   continue until ``--kills`` kills have been made.
3. Each round's ``results.json`` is compared with the reference's (timings left out), and
   the folder is searched for leftovers: temp files, outputs kept aside, a lock file.

Prints a summary: kills made, the stage each kill hit, rounds whose results were identical,
leftovers. Exit status 1 if any round differs or left something behind.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

TINY = {
    "train.epochs": 1, "train.lr_milestones": [], "train.data.train_subset": 512,
    "train.data.test_subset": 300, "train.batch_size": 64, "train.eval_attack": None,
    "train.lr": 0.05, "fit.code_dim": 8, "fit.g_channels": [8, 8, 8, 8], "fit.d_channels": [8, 8, 8, 8],
    "fit.c_width_mult": 0.25, "fit.steps_per_scale": [4, 4, 4, 12], "fit.batch_size": 16,
    "fit.train_subset": 256, "fit.eval_images": 32, "fit.ckpt_every": 4,
    "attack": "pgd-5", "explain_images": 2,
}
VOLATILE = {"timings_s", "wall_time_s", "budget"}


def command(run_dir: Path) -> list[str]:
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    return [sys.executable, "-m", "interpretgan.cli", "-q", "run", "--device", "cpu",
            "--run-dir", str(run_dir), "--layers", "feature_extractor.relu1,feature_extractor.pool2,classifier.fc3",
            "--dstar-images", "60", *sets]


def stable(obj):
    """``results.json`` without its timings (top-level and the fits' ``fit_seconds``)."""
    if isinstance(obj, dict):
        return {k: stable(v) for k, v in obj.items() if k not in VOLATILE and k != "fit_seconds"}
    return obj


def running_stage(run_dir: Path) -> str:
    """The stage a kill interrupted: one recorded as started and not done."""
    for p in sorted((run_dir / "stages").glob("*.json")) if (run_dir / "stages").exists() else []:
        try:
            if not json.loads(p.read_text()).get("done"):
                return p.stem.replace("__", ":")
        except json.JSONDecodeError:
            return "(a stage record being written)"
    return "(between stages)" if (run_dir / "stages").exists() else "(start-up)"


def leftovers(run_dir: Path) -> list[str]:
    bad = [p for p in run_dir.rglob(".*") if p.name.endswith((".tmp", ".replaced")) or p.name == ".lock"]
    return [str(p.relative_to(run_dir)) for p in bad]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--dir", default="runs/fault-drill")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    rng = random.Random(a.seed)
    base = Path(a.dir)
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)

    t = time.perf_counter()
    subprocess.run(command(base / "reference"), check=True, capture_output=True)
    ref_time = time.perf_counter() - t
    reference = stable(json.loads((base / "reference" / "results.json").read_text()))
    print(f"reference run: {ref_time:.1f} s")

    kills, hit, rounds = 0, Counter(), []
    while kills < a.kills:
        run_dir = base / f"drill-{len(rounds)}"
        starts = 0
        while True:
            starts += 1
            proc = subprocess.Popen(command(run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            delay = rng.uniform(1.0, ref_time)
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                if kills < a.kills:
                    stage = running_stage(run_dir)
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    hit[stage] += 1
                    continue
                proc.wait()
            err = proc.stderr.read().decode()
            if proc.returncode != 0:
                print(f"round {len(rounds)}: a rerun failed (exit {proc.returncode}):\n{err}")
                return 1
            break
        got = stable(json.loads((run_dir / "results.json").read_text()))
        rounds.append({"starts": starts, "identical": got == reference, "leftovers": leftovers(run_dir)})
        print(f"round {len(rounds) - 1}: {starts - 1} kills, results identical: {got == reference}, "
              f"leftovers: {rounds[-1]['leftovers'] or 'none'}", flush=True)

    print(f"\nkills: {kills} in {len(rounds)} rounds; every rerun resumed and finished")
    print("stages hit: " + ", ".join(f"{s} {n}" for s, n in sorted(hit.items())))
    same = sum(r["identical"] for r in rounds)
    left = [x for r in rounds for x in r["leftovers"]]
    print(f"results identical to the uninterrupted run: {same} of {len(rounds)} rounds")
    print(f"leftovers: {left or 'none'}")
    return 0 if same == len(rounds) and not left else 1


if __name__ == "__main__":
    sys.exit(main())
