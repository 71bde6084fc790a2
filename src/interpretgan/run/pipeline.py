"""The main job: ``interpretgan run``.

Stages (each cached under ``RUN/stages/<name>.json`` with a key of its inputs — configs, the
content of the files it reads, and the stage's number in ``STAGE_VERSIONS``, raised by hand
whenever a change to the stage's code changes its outputs; a stage whose key is unchanged and
whose outputs are still the files it recorded is skipped, a stage whose inputs changed or
whose outputs another command changed is redone from scratch, the first with its
old outputs kept aside until the new ones are complete, a killed stage resumes from its own
checkpoints)::

    train:natural, train:adversarially_trained      classifiers      RUN/<model>/checkpoints/final.pt
    dstar:<model>     PGD-40 adversarial test set (every step, every sample)  RUN/<model>/dstar.pt
    fit:<model>       InterpretGAN generators per layer                        RUN/<model>/fit/
    diagnose:<model>  Acc_i / Vul_i, max-pool change, misclassification        RUN/<model>/diagnosis.json
    explain:<model>   explanation grid + Captum baselines                      RUN/<model>/explain/
    report            RUN/results.json, RUN/report/index.html (pure function of the above)

A user's own classifier (``--model-file file.py:build --checkpoint my.pt``) replaces the two
trained models by that one.

Nothing in the run folder changes before every input is checked (configs, layer names, the
user's model and checkpoint); one process at a time works in a run folder (``RUN/.lock``, which
covers every folder inside it), and ``config.json`` is written when the job has finished.

With several ranks (``--devices N`` or torchrun), rank 0 runs the job as one process does —
stage records, D*, diagnosis, explanations, report — and hands the two distributed parts to
every rank (:meth:`~interpretgan.distributed.World.everyone`): classifier training
(data-parallel) and generator fitting (layers shared out). The number of ranks is no
stage's input: the cache and the report do not depend on it.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
import torch.nn as nn

from ..data.config import DataConfig
from ..data.sources import file_digest
from ..data.splits import checkpoint_data_config, content_digest, load_split, unpinned
from ..diagnosis.diagnose import build_dstar, diagnose_model, dstar_indices
from ..interpret.config import FitConfig
from ..interpret.explain import explain_run
from ..interpret.fit import check_fit_data, fit_and_summarize, load_generators
from ..interpret.layers import default_layers
from ..models.loading import load_any, model_file_record
from ..models.wrappers import output_selection, with_normalization
from ..report.html import write_main_report
from ..robust.config import TrainConfig
from ..robust.training import train_classifier
from .checks import (_check_batch_size, _check_judge, _check_layers, _check_readings, _example,
                     _judge_fits, _load_judge, _trained_configs, _untrained, _user_data,
                     largest_batch)
from .config import RunConfig, resolve_run
from .results import _WallClock, assemble_results
from .stages import Stages
from ..runtime.devices import resolve_device
from ..runtime.distributed import World, follow, release
from ..runtime.runs import (RunLock, load_checkpoint, read_json, save_checkpoint, sweep_temp,
                            write_json)
from ..settings import result_config

log = logging.getLogger(__name__)


def run_main(cfg: RunConfig, root: str | Path, model_file: str | None = None,
             checkpoint: str | None = None, progress: bool = True,
             device: str | torch.device | None = "auto", world: World | None = None,
             judge_model_file: str | None = None, verify_outputs: bool = False) -> dict | None:
    """Run every stage of the main job into ``root`` on ``device`` (``"auto"``: a GPU if there
    is one); returns ``results.json``'s content. The device is no stage's input: a run
    started on one device resumes on another.

    ``model_file``/``judge_model_file``: the code (``FILE.py:FUNCTION``) that builds the
    user's model and the judge (:mod:`~interpretgan.loading`: no checkpoint names its code).
    ``world``: several ranks, each on its ``world.device`` (replacing ``device``). Every rank
    checks the inputs; rank 0 then runs the job and returns the results, the others join
    its training and fitting stages and return None.

    ``verify_outputs``: check every cached stage's outputs by content (SHA-256), not only by
    size and mtime (:class:`Stages`)."""
    # Check everything before the run folder is touched.
    world = world if world is not None and world.distributed else World(device=resolve_device(device))
    resolved = resolve_run(cfg, own_model=bool(model_file or checkpoint))
    layers = list(cfg.layers) or None
    user, user_data = None, None
    code = {"user": model_file, "judge": judge_model_file}
    if model_file or checkpoint:
        if not (model_file and checkpoint):
            raise ValueError("--model-file and --checkpoint go together: give both")
        user = load_any(checkpoint, model_file=model_file)
        _check_layers(user, None, layers, "your model")
        if cfg.normalize is not None:
            with_normalization(user, cfg.normalize)
        user_data = _user_data(user, cfg, layers)
        layers = _check_layers(user, _example(user_data), layers, "your model")
        _check_readings(user, user_data, layers, resolved.fit)
        check_fit_data(len(load_split(user_data, "train")), resolved.fit)
        _check_batch_size(user, user_data, largest_batch(cfg, resolved.fit, layers or default_layers(user)),
                          world.device)
        if cfg.judge is not None:
            _check_judge(cfg.judge, judge_model_file, user, user_data)
    else:
        if cfg.judge is not None and resolved.adversarial is not None:
            raise ValueError("--judge is for your own model (--model-file) or a natural classifier "
                             "trained alone: the two trained classifiers are judged by each other")
        if cfg.normalize is not None:
            raise ValueError("--normalize wraps your own model: give it with --model-file and "
                             "--checkpoint (the trained classifiers take [0, 1] images)")
        if cfg.output is not None:
            raise ValueError("--output reads your own model's output: give it with --model-file "
                             "and --checkpoint (the trained classifiers return their logits)")
        if cfg.judge is not None:
            _load_judge(cfg.judge, judge_model_file)
        for tcfg in _trained_configs(resolved).values():
            net, x = _untrained(tcfg)
            layers = _check_layers(net, x, layers, f"the {tcfg.model.name} classifier")
            check_fit_data(len(load_split(dataclasses.replace(tcfg.data, train_subset=None), "train")),
                           resolved.fit)
    if layers is not None:  # one spelling per layer (``relu1@0`` → ``relu1``)
        cfg = dataclasses.replace(cfg, layers=tuple(layers))
    root = Path(root)
    if not world.main:  # the stages are rank 0's; this rank joins those it hands over
        follow(world)
        return None
    try:
        return _run_stages(cfg, root, resolved, user, user_data, code, checkpoint, progress, world,
                           verify_outputs)
    finally:
        release(world)


def _run_stages(cfg: RunConfig, root: Path, resolved, user, user_data, code: dict,
                checkpoint, progress: bool, world: World, verify_outputs: bool = False) -> dict:
    """Rank 0's part of :func:`run_main`, once every input is checked. ``code``: the model
    files typed for the user's model and the judge (``{"user": …, "judge": …}``).
    ``config.json`` is written with ``results.json``, once every stage it describes has
    finished: a failed or interrupted invocation leaves the one of the last finished run."""

    model_file = code["user"]
    root.mkdir(parents=True, exist_ok=True)
    with RunLock(root):
        for p in sweep_temp(root):
            log.info("removed a temp file left by a killed run: %s", p)
        clock = _WallClock(root)
        st = Stages(root, on_stage_end=clock.tick, verify=verify_outputs)

        # The classifiers: the user's, or the natural and the adversarially trained one.
        if user is not None:
            models = {"user": _user_model(st, root, cfg, model_file, checkpoint, user, user_data)}
        else:
            models = {key: _train_one(st, root, tcfg, key, world, progress)
                      for key, tcfg in _trained_configs(resolved).items()}

        # Per classifier: D*, generators, diagnosis, explanations.
        # Control (a): each trained classifier is judged by the other; a user's model (or a
        # natural classifier trained alone) by --judge.
        if user is not None or len(models) == 1:
            judges = {key: Path(cfg.judge) if cfg.judge is not None else None for key in models}
        else:
            judges = {"natural": models["adversarially_trained"] / "checkpoints" / "final.pt",
                      "adversarially_trained": models["natural"] / "checkpoints" / "final.pt"}
        diagnoses = {}
        for key, run in models.items():
            diagnoses[key] = _diagnose_one(st, key, run, cfg, resolved.fit, world, progress,
                                           judge=judges[key], code={**code, "user": code.get(key)})

        # The report: a pure function of the saved artifacts.
        results = assemble_results(root, diagnoses, st.timings, cfg, clock.tick())
        write_json(root / "config.json", {"run": dataclasses.asdict(cfg), "model_file": model_file,
                                          "checkpoint": checkpoint})
        write_json(root / "results.json", results)
        write_main_report(results, root)
        return results


def _user_model(st: Stages, root: Path, cfg: RunConfig, model_file: str, checkpoint: str,
                net: nn.Module, data: DataConfig) -> Path:
    """Stage ``train:user``: the user's classifier saved as ``root/user/checkpoints/final.pt``
    (its file, weights, input normalisation and data config, image size included). Its key is
    the content of the model file and of the checkpoint, the data set, the image size, the
    normalisation and how its output is read. Returns its run folder."""

    dest = root / "user" / "checkpoints" / "final.pt"
    path, _, fn = model_file.rpartition(":")
    normalize = list(cfg.normalize) if cfg.normalize is not None else None
    # how its logits are read (a model returning them itself: nothing, as before)
    output = {"output": output_selection(net)} if output_selection(net)["selector"] else {}

    def save():  # the file is recorded (path, content hash), never run from the checkpoint
        save_checkpoint(dest, {
            **model_file_record(model_file), "state_dict": net.state_dict(),
            "normalize": normalize, "config": {"data": dataclasses.asdict(data)}, **output})

    st.run("train:user", {"function": fn, "source": file_digest(path), "checkpoint": file_digest(checkpoint),
                          "dataset": cfg.dataset, "image_size": data.image_size,
                          "normalize": normalize, "verify": data.verify, **output},
           [dest], save)
    return root / "user"


def _train_one(st: Stages, root: Path, tcfg: TrainConfig, key: str, world: World,
               progress: bool) -> Path:
    """Stage ``train:<key>``: train one of the two classifiers on every rank; returns its run
    folder. Its key is the training config, and the data's content where no checksums pin it."""

    run = root / key
    inputs = result_config(tcfg)  # (how often it checkpoints is no input)
    if unpinned(tcfg.data):
        inputs = [inputs, content_digest(load_split(tcfg.data, "train")),
                  content_digest(load_split(tcfg.data, "test"))]
    st.run(f"train:{key}", inputs, [run / "checkpoints" / "final.pt"],
           lambda: world.everyone(_train_task, tcfg, run, progress), clean=[run],
           recorded=[run / n for n in ("checkpoints", "config.json", "metrics.json", "metrics.jsonl")])
    return run


def _train_task(world: World, tcfg: TrainConfig, run: Path, progress: bool) -> None:
    """Every rank's part of stage ``train:<key>``."""

    train_classifier(tcfg, run, progress=progress and world.main, device=world.device, world=world)


def _fit_task(world: World, ckpt: Path, data: DataConfig, fit_cfg: FitConfig, fit_dir: Path,
              layers: list[str] | None, dstar_images: int, progress: bool,
              model_file: str | None = None) -> None:
    """Every rank's part of stage ``fit:<key>``: its share of the layers; rank 0 summarises."""

    model = load_any(ckpt, world.device, model_file=model_file)
    test = load_split(data, "test")
    fit_and_summarize(model, data, fit_cfg, fit_dir, layers, dstar_indices=dstar_indices(test, dstar_images),
                      progress=progress and world.main, world=world)


def _diagnose_one(st: Stages, key: str, run: Path, cfg: RunConfig, fit_cfg: FitConfig,
                  world: World, progress: bool, judge: Path | None = None,
                  code: dict | None = None) -> dict:
    """Stages ``dstar:<key>``, ``fit:<key>``, ``diagnose:<key>``, ``explain:<key>`` for the
    classifier in ``run``, moved to rank 0's device once (the fit runs on every rank's
    device). ``judge``: the checkpoint of the independent classifier for control (a)
    (``acc_judge``; its content is part of the diagnose key), or None. ``code``: the model
    files typed for this classifier and for the judge (``{"user": …, "judge": …}``; None for
    zoo checkpoints). Returns its diagnosis."""

    device = world.device
    code = code or {}
    ckpt = run / "checkpoints" / "final.pt"
    model = load_any(ckpt, device, model_file=code.get("user"))
    data = checkpoint_data_config(ckpt, cfg.dataset, data_dir=cfg.data_dir)
    test = load_split(data, "test")
    trained = [st.key(f"train:{key}"), file_digest(ckpt)]  # the stage's key and its output
    if unpinned(data):  # files without pinned checksums can change between runs
        trained.append([content_digest(load_split(data, "train")), content_digest(test)])
    dpath = run / "dstar.pt"
    dkey = st.run(f"dstar:{key}", [trained, cfg.attack, cfg.dstar_images, cfg.seed], [dpath],
                  lambda: build_dstar(model, test, cfg.attack, cfg.dataset, cfg.dstar_images,
                                      cfg.seed, dpath, progress=progress))
    fit_dir = run / "fit"
    layers = list(cfg.layers) or None
    fkey = st.run(f"fit:{key}", [trained, dataclasses.asdict(fit_cfg), layers, cfg.dstar_images],
                  [fit_dir / "config.json", fit_dir / "summary.json"],
                  lambda: world.everyone(_fit_task, ckpt, data, fit_cfg, fit_dir, layers,
                                         cfg.dstar_images, progress, code.get("user")),
                  clean=[fit_dir])
    diag_path = run / "diagnosis.json"

    def diagnose():
        gans = {n: g.to(device) for n, g in load_generators(fit_dir, test.shape[0]).items()}
        dstar = load_checkpoint(dpath)
        judge_net = None
        if judge is not None:  # on the model's device, checked on two D* images
            judge_net = load_any(judge, device, model_file=code.get("judge"),
                                 flag="--judge-model-file")
            _judge_fits(judge_net, model, dstar["x"][:2].to(device), f"judge {judge}")
        doc = diagnose_model(model, gans, dstar, test.num_classes, judge=judge_net)
        classes = list(getattr(test, "classes", None) or range(test.num_classes))
        write_json(diag_path, {**doc, "classes": [str(c) for c in classes],
                               "output": output_selection(model)})

    judge_key = file_digest(judge) if judge is not None else None
    if judge is not None and code.get("judge"):  # the judge's code too
        judge_key = [judge_key, file_digest(code["judge"].rpartition(":")[0])]
    st.run(f"diagnose:{key}", [dkey, fkey, judge_key], [diag_path], diagnose)
    ex_dir = run / "explain"
    st.run(f"explain:{key}", [fkey, cfg.explain_images, cfg.attack], [ex_dir / "explain.json"],
           recorded=[ex_dir], fn=
           lambda: explain_run(run, cfg.explain_images, cfg.attack, data_dir=cfg.data_dir,
                               model=load_any(ckpt, device, model_file=code.get("user")),
                               device=device))
    return read_json(diag_path)


