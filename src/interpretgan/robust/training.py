"""Classifier training: one plain function per training step, a loop around them.

Steps (each returns a dict of floats):

* :func:`natural_step` — cross-entropy.
* :func:`trades_step` — TRADES: CE(f(x), y) + β·KL(f(x) ‖ f(x')), x' from a k-step KL attack.
* :func:`atta_trades_step` — ATTA-1 with the TRADES loss: x' continues each example's
  stored perturbation by one attack step instead of restarting (Zheng et al. 2019).
* :func:`pgd_at_step` — Madry et al.: CE on PGD-k examples.

:func:`train_classifier` wraps a step with data, schedule, evaluation, progress bar,
atomic checkpoints (after every epoch, and resume points inside one) and resume.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from ..data.sources import ImageDataset
from ..data.splits import batches, load_split, num_batches
from ..data.transforms import random_crop_flip
from ..models import zoo
from ..models.loading import load_state_dict_strict
from ..models.zoo import build_model, dataset_classes, dataset_shape
from .attacks import get_attack
from .config import TrainConfig
from .evaluate import accuracy, robust_accuracy
from .methods import Batch, Method, TRAIN_METHODS
from ..runtime.devices import resolve_device
from ..runtime.distributed import (BatchShare, World, all_sum, average_gradients, batch_share,
                                   share_dropout, sync_buffers)
from ..runtime.progress import progress_bar
from ..runtime.runs import (NonFiniteError, RunDir, RunLock, UnsafeCheckpointError, append_jsonl,
                            load_checkpoint, read_json, read_jsonl, rng_state, save_checkpoint,
                            seed_everything, set_rng_state, sweep_temp, write_json)
from ..runtime.tensorboard import TensorBoard, require_tensorboard
from ..settings import same_config, validate

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- losses / steps
# --------------------------------------------------------------------------- loop
def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate of (0-based) ``epoch``: ``lr`` × γ for every milestone passed."""
    return cfg.lr * cfg.lr_gamma ** sum(epoch >= m for m in cfg.lr_milestones)


def train_classifier(cfg: TrainConfig, run_dir: str | Path, resume: bool = True,
                     progress: bool = True, stop_after: int | None = None,
                     on_epoch: Callable[[dict], None] | None = None,
                     device: str | torch.device | None = "auto",
                     world: World | None = None, log_dir: str | Path | None = None) -> dict | None:
    """Train a classifier as ``cfg`` says, in ``run_dir``; returns the final metrics.

    ``device``: ``"auto"`` (a GPU if there is one), ``"cpu"``, ``"cuda[:N]"``; not part of
    the config, so a run started on one device resumes on another.

    Checkpoints ``checkpoints/last.pt`` after every epoch (atomically), and inside an epoch
    every ``cfg.checkpoint_every`` batches / ``cfg.checkpoint_every_s`` seconds (a resume
    point: the epoch's data position, generator and RNG states, running totals with it); with
    ``resume``, continues from it, bit-identical to an uninterrupted run (on one process).
    ``stop_after`` ends the call after that many epochs
    of this call (to simulate a kill in tests). Writes ``config.json``,
    ``metrics.jsonl`` (one row per epoch), ``metrics.json`` and ``checkpoints/final.pt``
    (which holds the metrics too: a kill between the two files is repaired on the next call).

    ``cfg`` is validated before any work (:class:`~interpretgan.config.ConfigError`); the
    folder is locked while training (:class:`~interpretgan.runs.RunLock`) and temp files a
    killed run left in it are removed. A loss that becomes NaN or infinite stops training
    with :class:`~interpretgan.runs.NonFiniteError`.

    ``world``: data-parallel training over several ranks (each on its ``world.device``, which
    replaces ``device``): every global batch of ``cfg.batch_size`` is shared out by example
    index and the gradients are averaged over the whole batch, so the ranks compute what one
    process computes, up to the order of float sums. Rank 0 locks the folder, evaluates and
    writes everything but the per-rank state shards
    (``checkpoints/shards/epoch<e>[-batch<b>]-rank<r>-of-<W>.pt``: ATTA's perturbations of
    the rank's examples); it returns the metrics, the other ranks None. A run resumes on any number of
    ranks (the shards are merged and split again).

    ``log_dir``: TensorBoard events there (rank 0; :class:`~interpretgan.runtime.tensorboard.TensorBoard`):
    every numeric field of each epoch's ``metrics.jsonl`` row but ``epoch`` as the scalar
    ``train/<field>``, its step the epoch (1-based). A finished run that is reused writes
    none; a resumed one hides the events of the epochs it redoes. Logging changes no result.
    """
    validate(cfg)
    if log_dir is not None:
        require_tensorboard()  # the optional package, before any work
    world = world or World()
    device = world.device if world.distributed else resolve_device(device)  # fail before any work
    method = TRAIN_METHODS.get(cfg.method)
    rd = RunDir(run_dir)
    with RunLock(rd.root) if world.main else contextlib.nullcontext():
        if world.main:
            sweep_temp(rd.root)
            rd.mkdir()
        world.wait_all("train-start")  # no rank reads or writes before the sweep
        return _train(cfg, rd, method, resume, progress and world.main, stop_after, on_epoch,
                      device, world, log_dir)


def _finished_metrics(rd: RunDir, cfg: TrainConfig) -> dict | None:
    """The metrics of a finished ``final.pt`` trained with ``cfg`` (``metrics.json`` is
    rewritten from the checkpoint if it is missing or stale), else ``None``."""
    done = load_checkpoint(rd.final)
    if not isinstance(done, dict) or not same_config(done.get("config", {}), cfg):
        return None
    metrics = done.get("metrics")
    if metrics is None:  # a checkpoint without its metrics: metrics.json is the only record
        return read_json(rd.metrics) if rd.metrics.exists() else None
    try:
        on_disk = read_json(rd.metrics) if rd.metrics.exists() else None
    except ValueError:  # a damaged metrics.json: rewritten below
        on_disk = None
    if on_disk != metrics:
        log.info("restoring %s from %s", rd.metrics, rd.final)
        write_json(rd.metrics, metrics)
    return metrics


@dataclasses.dataclass
class _Job:
    """What one training call works with (the loop's parts share it)."""

    cfg: TrainConfig
    rd: RunDir
    method: Method
    model: nn.Module
    optimizer: torch.optim.Optimizer
    averager: "_GradientAverager"
    share: BatchShare
    state: dict
    train_set: object
    device: torch.device
    world: World
    progress: bool
    gen: torch.Generator = dataclasses.field(default_factory=torch.Generator)  # attack starts
    aug_gen: torch.Generator = dataclasses.field(default_factory=torch.Generator)  # crops, flips
    shard: Path | None = None  # this rank's last saved state shard (ranks > 1)
    board: TensorBoard = dataclasses.field(default_factory=lambda: TensorBoard(None))  # rank 0's events


def _train(cfg: TrainConfig, rd: RunDir, method: Method, resume: bool, progress: bool,
           stop_after: int | None, on_epoch: Callable[[dict], None] | None,
           device: torch.device, world: World, log_dir: str | Path | None = None) -> dict | None:
    if rd.final.exists() and resume:
        metrics = world.share(_finished_metrics(rd, cfg) if world.main else None)
        if metrics is not None:
            log.info("%s is already trained; reusing it", rd.final)
            return metrics if world.main else None
    seed_everything(cfg.seed)
    train_set, test_set = load_split(cfg.data, "train"), load_split(cfg.data, "test")
    job = _new_job(cfg, rd, method, train_set, device, world, progress)
    start_epoch, elapsed, part = 0, 0.0, None
    if resume and rd.last.exists():
        start_epoch, elapsed, part = _resume(job)
    elif world.main:
        rd.metrics_jsonl.unlink(missing_ok=True)
    if world.main:
        write_json(rd.config, {"kind": "classifier", **dataclasses.asdict(cfg)})
    eval_attack = get_attack(cfg.eval_attack, cfg.data.dataset) if cfg.eval_attack else None
    job.board = TensorBoard(log_dir if world.main else None, purge_step=start_epoch + 1)
    try:
        return _epochs(job, test_set, eval_attack, start_epoch, elapsed, part, stop_after, on_epoch)
    finally:
        job.board.close()


def _epochs(job: _Job, test_set, eval_attack, start_epoch: int, elapsed: float, part: dict | None,
            stop_after: int | None, on_epoch: Callable[[dict], None] | None) -> dict | None:
    """The epochs from ``start_epoch`` (``part``: the position inside it a resume point saved)
    to the end, or to ``stop_after`` epochs of this call; returns :func:`_train`'s answer."""
    cfg, world = job.cfg, job.world
    epochs_run = 0
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter() - (part["train_s"] if part else 0.0)
        sums, n = _epoch_steps(job, epoch, elapsed, part)
        part = None
        row = {"epoch": epoch + 1, "lr": lr_at(cfg, epoch),
               **{f"train_{k}": v / n for k, v in sums.items()},
               "train_s": time.perf_counter() - t0}  # the epoch's steps, before evaluation

        # Evaluation, the metrics row and the checkpoint: rank 0's (the shards: each rank's).
        epochs_run += 1
        stop = stop_after is not None and epochs_run >= stop_after and epoch + 1 < cfg.epochs
        if not world.main:
            _save_shard(job, epoch + 1, 0)
            if stop:
                return None
            continue
        elapsed = _epoch_end(job, row, test_set, eval_attack, elapsed + time.perf_counter() - t0)
        if on_epoch is not None:
            on_epoch(row)
        if stop:
            return {"interrupted": True, "epoch": epoch + 1}
    if not world.main:
        return None
    return _finish(job, elapsed, eval_attack)


def _epoch_end(job: _Job, row: dict, test_set, eval_attack, elapsed: float) -> float:
    """Rank 0, after epoch ``row["epoch"]``'s steps: the evaluation into ``row``, the
    metrics row (``metrics.jsonl`` and TensorBoard), ``last.pt``. ``elapsed``: the seconds
    so far, up to the evaluation; returns them after it."""
    cfg, rd, epoch = job.cfg, job.rd, row["epoch"]
    t0 = time.perf_counter()
    row["test_acc"] = accuracy(job.model, test_set, cfg.eval_batch_size)
    if eval_attack is not None and (epoch == cfg.epochs or (
            cfg.eval_attack_every and epoch % cfg.eval_attack_every == 0)):
        sub = test_set.subset(cfg.eval_attack_subset) if isinstance(test_set, ImageDataset) else test_set
        row[f"{eval_attack.name}_acc"] = robust_accuracy(job.model, sub, eval_attack,
                                                         cfg.eval_batch_size)
    elapsed += time.perf_counter() - t0
    row["elapsed_s"] = elapsed
    append_jsonl(rd.metrics_jsonl, row)
    job.board.scalars(epoch, {f"train/{k}": v for k, v in row.items() if k != "epoch"})
    log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in row.items()})
    _save_last(job, epoch, elapsed)
    return elapsed


def _new_job(cfg: TrainConfig, rd: RunDir, method: Method, train_set, device: torch.device,
             world: World, progress: bool) -> _Job:
    """The model (on ``device``), its optimizer and the method's fresh state."""
    shape = dataset_shape(train_set)
    model = build_model(cfg.model, shape, dataset_classes(train_set))
    share = BatchShare()  # this rank's rows of each global batch
    if world.distributed:
        model = share_dropout(model, share)  # the dropout masks a lone process draws
        if device.type == "cuda":  # batch statistics over the global batch
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = zoo.fast_layout(model.to(device), device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    averager = _GradientAverager(world, optimizer)  # every rank steps with the global batch's gradient
    return _Job(cfg, rd, method, model, optimizer, averager, share,
                method.init_state(train_set, cfg, shape, world), train_set, device, world, progress)


def _resume(job: _Job) -> tuple[int, float, dict | None]:
    """Load ``last.pt`` into ``job``; returns (epochs done, seconds so far, the position inside
    the next epoch or None at an epoch's end)."""
    rd, cfg = job.rd, job.cfg
    try:
        ck = load_checkpoint(rd.last)
    except UnsafeCheckpointError as e:  # e.g. a resume file of an older version
        raise UnsafeCheckpointError(f"{e}; start over with --no-resume") from None
    if not same_config(ck.get("config", {}), cfg):
        raise ValueError(f"{rd.last} was written with another config; use a new run "
                         "directory or --no-resume")
    load_state_dict_strict(job.model, ck["state_dict"], str(rd.last))
    job.optimizer.load_state_dict(ck["optimizer"])
    part = ck.get("within_epoch")
    job.state, job.shard = _resume_state(rd, ck, job.method, job.world)
    set_rng_state(ck["rng"])
    log.info("resuming %s at epoch %d%s on %s%s", rd.root, ck["epoch"] + 1,
             f", batch {part['batch'] + 1}" if part else "", job.device,
             f" ({job.world.size} ranks)" if job.world.distributed else "")
    return ck["epoch"], ck.get("elapsed_s", 0.0), part


def _epoch_steps(job: _Job, epoch: int, elapsed: float, part: dict | None) -> tuple[dict, int]:
    """The training steps of (0-based) ``epoch``, from its start or from the position ``part``
    a resume point inside it saved; saves such points as ``cfg.checkpoint_every[_s]`` say.
    Returns the summed step outputs and the number of examples (over every rank)."""
    cfg, world = job.cfg, job.world
    for group in job.optimizer.param_groups:
        group["lr"] = lr_at(cfg, epoch)
    if part is None:
        job.method.on_epoch_start(job.state, cfg, epoch, world)
        job.aug_gen.manual_seed(cfg.seed * 1000 + epoch)
        job.gen.manual_seed(cfg.seed * 1000 + epoch + 1)  # (every rank draws what one process draws)
        sums, n, first, t0 = {}, 0, 0, time.perf_counter()
    else:  # rank 0 carries the totals of the steps before (see _save_last)
        job.aug_gen.set_state(part["aug_gen"])
        job.gen.set_state(part["gen"])
        sums = dict(part["sums"]) if world.main else {k: 0.0 for k in part["sums"]}
        n, first = part["n"] if world.main else 0, part["batch"]
        t0 = time.perf_counter() - part["train_s"]
    total = num_batches(job.train_set, cfg.batch_size)
    bar = progress_bar(batches(job.train_set, cfg.batch_size, shuffle=True, seed=cfg.seed, epoch=epoch,
                               with_index=True, start=first),
                       total=total, initial=first, enabled=job.progress,
                       desc=f"{cfg.method} epoch {epoch + 1}/{cfg.epochs}")
    clock = _ResumeClock(cfg, world)
    for step, (idx, x, y) in enumerate(bar, start=first):
        out, count = _one_step(job, idx, x, y)
        for k, v in out.items():
            if not math.isfinite(v):  # the step's floats are on the host already: free
                raise NonFiniteError(
                    f"training {cfg.model.name} ({cfg.method}) in {job.rd.root}: {k} is {v} at "
                    f"epoch {epoch + 1}, batch {step + 1}; lower the learning rate or check "
                    "the data")
            sums[k] = sums.get(k, 0.0) + v * count
        n += count
        if bar.n % 20 == 0 and n:  # drawn on the bar's own schedule
            bar.set_postfix({k: f"{v / n:.3f}" for k, v in sums.items() if k in ("loss", "acc")},
                            refresh=False)
        if step + 1 < total and clock.due(step + 1):
            _save_within(job, epoch, elapsed, step + 1, sums, n, time.perf_counter() - t0)
    if world.distributed:  # the epoch's means over every rank's examples
        totals = all_sum({**sums, "__n": n}, world)
        n = int(totals.pop("__n"))
        sums = totals
        sync_buffers(job.model, world)  # (BatchNorm statistics of CPU ranks)
    return sums, n


def _one_step(job: _Job, idx, x, y) -> tuple[dict[str, float], int]:
    """One global batch's step on this rank's examples; returns the step's outputs and the
    number of examples they are means over."""
    cfg, world = job.cfg, job.world
    aug = None
    if cfg.data.augment:  # on the CPU, where the perturbation store lives
        x, aug = random_crop_flip(x, 4, job.aug_gen)  # (the whole batch: same draws on every rank)
    # This rank's examples of the global batch; the gradients are averaged over all.
    if world.distributed:
        mine = batch_share(idx, world, job.method.by_index)
        job.share.rows, job.share.total = mine, len(idx)
        idx, x, y = idx[mine], x[mine], y[mine]
        aug = None if aug is None else tuple(a[mine] for a in aug)
        job.averager.count = len(y)
        # None of this batch's examples are ours (a by-index share of a small batch):
        # step with the others. (This rank's dropout draws fall out of step with one
        # process's for the rest of the run: still correct, no longer identical.)
        if not len(y):
            job.optimizer.zero_grad(set_to_none=True)
            job.optimizer.step()
            return {}, 0
    x, y = x.to(job.device, non_blocking=True), y.to(job.device, non_blocking=True)
    out = job.method.step(Batch(job.model, job.optimizer, idx // world.size, x, y, aug, job.state, cfg,
                                job.gen, job.share if world.distributed else None))
    return out, len(y)


class _ResumeClock:
    """When to save a resume point inside an epoch: after every ``cfg.checkpoint_every``-th
    batch, and once ``cfg.checkpoint_every_s`` seconds passed since the last one (rank 0's
    clock decides for every rank)."""

    def __init__(self, cfg: TrainConfig, world: World):
        self.every, self.seconds, self.world = cfg.checkpoint_every, cfg.checkpoint_every_s, world
        self.last = time.monotonic()

    def due(self, done: int) -> bool:
        """Whether to save after ``done`` batches of the epoch (the same answer on every rank)."""
        due = bool(self.every) and done % self.every == 0
        if self.seconds:
            late = time.monotonic() - self.last >= self.seconds
            if self.world.distributed:
                late = all_sum({"late": float(late and self.world.main)}, self.world)["late"] > 0
            due = due or late
        if due:
            self.last = time.monotonic()
        return due


def _save_within(job: _Job, epoch: int, elapsed: float, done: int, sums: dict, n: int,
                 train_s: float) -> None:
    """A resume point after ``done`` batches of (0-based) ``epoch``: everything the rest of the
    epoch depends on (weights, optimizer, method state, generators, RNG states, the epoch's
    running totals over every rank) in ``last.pt`` (+ each rank's state shard)."""
    if job.world.distributed:
        totals = all_sum({**sums, "__n": n}, job.world)
        n, sums = int(totals.pop("__n")), totals
    within = {"batch": done, "sums": dict(sums), "n": n, "train_s": train_s,
              "gen": job.gen.get_state(), "aug_gen": job.aug_gen.get_state()}
    if not job.world.main:
        _save_shard(job, epoch, done)
        return
    _save_last(job, epoch, elapsed, within)
    log.debug("resume point: epoch %d, batch %d", epoch + 1, done)


def _save_last(job: _Job, epoch: int, elapsed: float, within: dict | None = None) -> None:
    """Rank 0: ``last.pt`` after ``epoch`` whole epochs (and ``within["batch"]`` batches of the
    next, when given), after every rank saved its state shard."""
    world = job.world
    _save_shard(job, epoch, within["batch"] if within else 0)
    save_checkpoint(job.rd.last, {
        **zoo.classifier_state(job.model), "optimizer": job.optimizer.state_dict(),
        "method_state": None if world.distributed else job.state,
        "state_shards": world.size if world.distributed else None,
        "epoch": epoch, "within_epoch": within, "elapsed_s": elapsed, "rng": rng_state(),
        "config": dataclasses.asdict(job.cfg)})


def _finish(job: _Job, elapsed: float, eval_attack) -> dict:
    """Rank 0, after the last epoch: ``metrics.json``, ``final.pt``; the resume files go."""
    cfg, rd = job.cfg, job.rd
    last = read_jsonl_last(rd.metrics_jsonl)
    metrics = {"dataset": cfg.data.dataset, "model": cfg.model.name, "pool": cfg.model.pool,
               "method": cfg.method, "epochs": cfg.epochs, "test_accuracy": last["test_acc"],
               "wall_time_s": elapsed, "run_dir": str(rd.root), "device": str(job.device)}
    if eval_attack is not None:
        metrics[f"{eval_attack.name}_accuracy_subset"] = last.get(f"{eval_attack.name}_acc")
    write_json(rd.metrics, metrics)  # final.pt holds them too (see _finished_metrics)
    save_checkpoint(rd.final, {**zoo.classifier_state(job.model), "config": dataclasses.asdict(cfg),
                               "metrics": metrics, "dataset": cfg.data.dataset})
    rd.last.unlink(missing_ok=True)  # the finished model lives in final.pt
    shutil.rmtree(_shard_dir(rd), ignore_errors=True)
    return metrics


# --------------------------------------------------------------------------- ranks
class _GradientAverager:
    """An optimizer step pre-hook: before every step, the gradients become the mean over
    the whole global batch (:func:`~interpretgan.distributed.average_gradients`, weighted by
    ``count``, this rank's examples in the batch). Nothing in a lone process."""

    def __init__(self, world: World, optimizer: torch.optim.Optimizer):
        self.count = 0
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        if world.distributed:
            optimizer.register_step_pre_hook(self)

    def __call__(self, optimizer, args, kwargs) -> None:
        average_gradients(self.params, self.count)


def _shard_dir(rd: RunDir) -> Path:
    return rd.checkpoints / "shards"


def _shard_path(rd: RunDir, epoch: int, rank: int, size: int, batch: int = 0) -> Path:
    """Rank ``rank`` of ``size``'s state after ``epoch`` epochs (and ``batch`` batches of the next)."""
    at = f"epoch{epoch}" + (f"-batch{batch}" if batch else "")
    return _shard_dir(rd) / f"{at}-rank{rank}-of-{size}.pt"


def _save_shard(job: _Job, epoch: int, batch: int) -> None:
    """Every rank's share of the method's state after ``epoch`` epochs and ``batch`` batches
    (for ranks > 1). This rank's shard before stays until every rank has written this one
    and rank 0's last.pt (written after this barrier) names it; older ones go."""
    world, rd = job.world, job.rd
    if not world.distributed:
        return
    path = _shard_path(rd, epoch, world.rank, world.size, batch)
    save_checkpoint(path, {"epoch": epoch, "batch": batch, "rank": world.rank, "world": world.size,
                           "state": job.state})
    world.wait_all("train-shards")
    for old in _shard_dir(rd).glob(f"epoch*-rank{world.rank}-of-{world.size}.pt"):
        if old not in (path, job.shard):
            old.unlink(missing_ok=True)
    job.shard = path


def _resume_state(rd: RunDir, ck: dict, method: Method, world: World) -> tuple[dict, Path | None]:
    """This rank's method state at the checkpoint ``ck`` of ``rd.last``: the whole state a
    lone process saved, or the shards of ``ck["state_shards"]`` ranks, merged and split
    again when the number of ranks changed; and this rank's shard it read, if one."""
    saved = ck.get("state_shards")
    if not saved:
        return method.local_state(ck["method_state"], world), None
    batch = (ck.get("within_epoch") or {}).get("batch", 0)
    if saved == world.size:
        mine = _shard_path(rd, ck["epoch"], world.rank, saved, batch)
        return load_checkpoint(mine)["state"], mine
    paths = [_shard_path(rd, ck["epoch"], r, saved, batch) for r in range(saved)]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise ValueError(f"{rd.last} was saved by {saved} ranks, but the shard(s) "
                         f"{', '.join(missing)} are missing from {_shard_dir(rd)}: resume on the "
                         "same machines, or start over with --no-resume")
    log.info("resuming %d ranks' state shards on %d", saved, world.size)
    whole = method.merge_states([load_checkpoint(p)["state"] for p in paths])
    return method.local_state(whole, world), None


def read_jsonl_last(path: Path) -> dict:
    rows = read_jsonl(path)
    if not rows:
        raise RuntimeError(f"{path} has no rows")
    return rows[-1]


