"""Fault drill: SIGKILL a tiny ``interpretgan run`` at chosen and random moments, rerun the same
command each time, and check that the finished results equal an uninterrupted run's.

    python benchmarks/fault_drill.py --kills 30 --log docs/fault_drill.json

1. One uninterrupted run into ``DIR/reference``. It counts what a run does: the training
   steps and every file it writes atomically, by kind (a training checkpoint, a member of the
   generator fit, a stage record, D*, the report, other JSON), and its duration T.
2. Drill rounds: start the same command in ``DIR/drill-<r>`` and SIGKILL it

   * ``step``: before the k-th training step (inside an epoch of either classifier),
   * ``save:<kind>``: in the middle of the k-th atomic save of that kind (the temp file
     half written, the target not yet replaced),
   * ``time``: after a random delay in (1 s, T),

   with k drawn from the reference's counts; start it again, …, up to ``--per-round`` kills,
   then let a start run to completion. Rounds continue until ``--kills`` kills were made;
   the kinds take turns.
3. Each round's ``results.json`` is compared with the reference's (timings left out) and so
   are the two classifiers' final weights (bit for bit); the folder is searched for
   leftovers (temp files, outputs kept aside, a lock file). Work lost: the training steps
   run more than once, and the extra wall time of the round, per kill.

The kills come from a hook this script installs in its own child process (``--child``): the
library has no test hooks. Exit status 1 if any round differs or left something behind.
"""
from __future__ import annotations

import argparse
import json
import os
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
    "train.lr": 0.05, "train.checkpoint_every": 2, "fit.code_dim": 8, "fit.g_channels": [8, 8, 8, 8],
    "fit.d_channels": [8, 8, 8, 8], "fit.c_width_mult": 0.25, "fit.steps_per_scale": [4, 4, 4, 12],
    "fit.batch_size": 16, "fit.train_subset": 256, "fit.eval_images": 32, "fit.ckpt_every": 4,
    "attack": "pgd-5", "explain_images": 2,
}
VOLATILE = {"timings_s", "wall_time_s", "budget"}
SAVE_KINDS = ("checkpoint", "fit", "stage", "dstar", "report", "other")


def cli_args(run_dir: Path) -> list[str]:
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    return ["-q", "run", "--device", "cpu", "--run-dir", str(run_dir),
            "--layers", "feature_extractor.relu1,feature_extractor.pool2,classifier.fc3",
            "--dstar-images", "60", *sets]


def save_kind(path: Path) -> str:
    """The kind of file an atomic save writes (see the module docstring)."""
    parts = path.parts
    if "checkpoints" in parts:
        return "checkpoint"
    if "fit" in parts:
        return "fit"
    if "stages" in parts:
        return "stage"
    if path.name == "dstar.pt":
        return "dstar"
    if "report" in parts or path.name == "results.json":
        return "report"
    return "other"


# --------------------------------------------------------------------------- the child process
def child(plan: dict, args: list[str]) -> int:
    """Run the command with a hook: count steps and saves into ``plan["counts"]`` (a file),
    and SIGKILL this process at ``plan["kind"]``'s ``plan["at"]``-th event."""
    from interpretgan import cli, runs
    from interpretgan.robust import training

    counts: Counter = Counter()
    kind, at = plan.get("kind"), plan.get("at")

    def note(event: str) -> bool:
        counts[event] += 1
        Path(plan["counts"]).write_text(json.dumps(counts))
        return event == kind and counts[event] == at

    real_step, real_write = training._one_step, runs._atomic_write

    def step(*a, **kw):
        if note("step"):
            os.kill(os.getpid(), signal.SIGKILL)
        return real_step(*a, **kw)

    def atomic_write(path, write):
        if not note(f"save:{save_kind(Path(path))}"):
            return real_write(path, write)

        def half_then_kill(f, tmp):  # the temp file half written, the target untouched
            write(f, tmp)
            f.flush()
            f.truncate(f.tell() // 2)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        return real_write(path, half_then_kill)

    training._one_step, runs._atomic_write = step, atomic_write
    return cli.main(args)


# --------------------------------------------------------------------------- the drill
def start(run_dir: Path, plan: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", json.dumps(plan), "--",
                             *cli_args(run_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stable(obj):
    """``results.json`` without its timings (top-level and the fits' ``fit_seconds``)."""
    if isinstance(obj, dict):
        return {k: stable(v) for k, v in obj.items() if k not in VOLATILE and k != "fit_seconds"}
    return obj


def same_weights(a: Path, b: Path) -> bool:
    import torch

    for key in ("natural", "adversarially_trained"):
        wa, wb = (torch.load(p / key / "checkpoints" / "final.pt", weights_only=True)["state_dict"]
                  for p in (a, b))
        if wa.keys() != wb.keys() or not all(torch.equal(wa[k], wb[k]) for k in wa):
            return False
    return True


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


def plan_kill(kind: str, ref: dict, rng: random.Random, counts: Path) -> tuple[dict, float | None]:
    """A start's plan (for the child) and, for ``time``, the delay before the kill."""
    if kind == "time":
        return {"counts": str(counts)}, rng.uniform(1.0, ref["seconds"])
    return {"counts": str(counts), "kind": kind, "at": rng.randint(1, ref["counts"][kind])}, None


def run_round(r: int, base: Path, kinds: list[str], ref: dict, rng: random.Random) -> dict:
    """One folder: a start per kill in ``kinds``, then a start that finishes."""
    run_dir = base / f"drill-{r}"
    kills, steps, t_total = [], 0, 0.0
    for kind in [*kinds, None]:
        counts = base / f"counts-{r}-{len(kills)}.json"
        plan, delay = plan_kill(kind, ref, rng, counts) if kind else ({"counts": str(counts)}, None)
        t0 = time.perf_counter()
        proc = start(run_dir, plan)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        t_total += time.perf_counter() - t0
        steps += json.loads(counts.read_text()).get("step", 0) if counts.exists() else 0
        err = proc.stderr.read().decode()
        if proc.returncode == -signal.SIGKILL:
            kills.append({"kind": kind, "at": plan.get("at"), "delay_s": delay,
                          "stage": running_stage(run_dir)})
        elif proc.returncode != 0:
            raise SystemExit(f"round {r}: a start failed (exit {proc.returncode}):\n{err}")
        elif kind is None or proc.returncode == 0:
            break  # finished (a planned kill whose moment never came ends the round too)
    got = stable(json.loads((run_dir / "results.json").read_text()))
    return {"round": r, "kills": kills, "identical_results": got == ref["results"],
            "identical_weights": same_weights(base / "reference", run_dir),
            "steps_redone": steps - ref["counts"].get("step", 0),
            "extra_s": t_total - ref["seconds"], "leftovers": leftovers(run_dir)}


def summary(rounds: list[dict], ref: dict) -> dict:
    kills = [k for r in rounds for k in r["kills"]]
    n = max(len(kills), 1)
    return {
        "kills": len(kills), "rounds": len(rounds),
        "kills_by_kind": dict(Counter(k["kind"] for k in kills)),
        "stages_hit": dict(Counter(k["stage"] for k in kills)),
        "rounds_identical": sum(r["identical_results"] and r["identical_weights"] for r in rounds),
        "training_steps_redone_per_kill": sum(r["steps_redone"] for r in rounds) / n,
        "training_steps_per_run": ref["counts"].get("step", 0),
        "extra_seconds_per_kill": sum(r["extra_s"] for r in rounds) / n,
        "reference_seconds": ref["seconds"],
        "leftovers": [x for r in rounds for x in r["leftovers"]],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--per-round", type=int, default=3, help="kills per run folder")
    ap.add_argument("--dir", default="runs/fault-drill")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log", help="write the rounds and the summary here (JSON)")
    a = ap.parse_args(argv)
    rng = random.Random(a.seed)
    base = Path(a.dir)
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)

    t = time.perf_counter()
    proc = start(base / "reference", {"counts": str(base / "counts-reference.json")})
    if proc.wait() != 0:
        raise SystemExit(f"the reference run failed:\n{proc.stderr.read().decode()}")
    ref = {"seconds": time.perf_counter() - t,
           "counts": json.loads((base / "counts-reference.json").read_text()),
           "results": stable(json.loads((base / "reference" / "results.json").read_text()))}
    print(f"reference run: {ref['seconds']:.1f} s; it does {json.dumps(ref['counts'])}", flush=True)
    kinds = ["step", *(f"save:{k}" for k in SAVE_KINDS if ref["counts"].get(f"save:{k}")), "time"]

    rounds, turn = [], 0
    while sum(len(r["kills"]) for r in rounds) < a.kills:
        plan = [kinds[(turn + i) % len(kinds)] for i in range(a.per_round)]
        turn += a.per_round
        rounds.append(run_round(len(rounds), base, plan, ref, rng))
        r = rounds[-1]
        print(f"round {r['round']}: kills {[k['kind'] + ' @ ' + k['stage'] for k in r['kills']]}, "
              f"identical results {r['identical_results']}, weights {r['identical_weights']}, "
              f"steps redone {r['steps_redone']}, leftovers {r['leftovers'] or 'none'}", flush=True)
    doc = {"command": "python benchmarks/fault_drill.py " + " ".join(argv or sys.argv[1:]),
           "summary": summary(rounds, ref), "reference_counts": ref["counts"], "rounds": rounds}
    print(json.dumps(doc["summary"], indent=2))
    if a.log:
        Path(a.log).write_text(json.dumps(doc, indent=2) + "\n")
    s = doc["summary"]
    return 0 if s["rounds_identical"] == len(rounds) and not s["leftovers"] else 1


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.exit(child(json.loads(sys.argv[2]), sys.argv[4:]))
    sys.exit(main())
