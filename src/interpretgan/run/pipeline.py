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

With ``tensorboard=True`` (``interpretgan run --tensorboard``) the training and fitting stages
write TensorBoard events, one folder per classifier and stage (see :func:`tensorboard_dir`)::

    RUN/tensorboard/<model>/train     train/<field> per epoch (the metrics.jsonl rows)
    RUN/tensorboard/<model>/fit       <member>/<loss>, <member>/agreement, <member>/explanations

(``tensorboard --logdir RUN/tensorboard``). The folder is no stage's input and no stage's
output: turning it on or off invalidates no cached stage, and a stage served from the cache
writes no events.
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
from ..interpret.fit import fit_and_summarize, load_generators
from ..models.loading import load_model, model_file_record
from ..models.wrappers import output_selection
from ..report.html import write_main_report
from ..robust.config import TrainConfig
from ..robust.training import train_classifier
from .checks import _judge_fits, _trained_configs, check_own_model, check_trained
from .config import ResolvedRun, RunConfig, resolve_run
from .results import _WallClock, assemble_results
from .stages import Stages
from ..runtime.devices import resolve_device
from ..runtime.distributed import World, end_handover, serve_rank0
from ..runtime.runs import (RunLock, load_checkpoint, read_json, save_checkpoint, sweep_temp,
                            write_json)
from ..runtime.tensorboard import require_tensorboard
from ..settings import result_config

log = logging.getLogger(__name__)


def tensorboard_dir(root: str | Path, key: str, part: str) -> Path:
    """Where the main job writes TensorBoard events of classifier ``key``'s ``part``
    (``"train"`` or ``"fit"``): ``RUN/tensorboard/<key>/<part>``."""
    return Path(root) / "tensorboard" / key / part


@dataclasses.dataclass
class Job:
    """What rank 0 runs the stages with, once every input is checked (:func:`run_main`).
    ``user``/``user_data``: the user's model and the data config it takes (None for the
    trained classifiers); ``code``: the model files typed for the user's model and the judge
    (``{"user": …, "judge": …}``); ``checkpoint``: the user's weights."""

    cfg: RunConfig
    root: Path
    resolved: ResolvedRun
    world: World
    user: nn.Module | None = None
    user_data: DataConfig | None = None
    code: dict = dataclasses.field(default_factory=dict)
    checkpoint: str | None = None
    progress: bool = True
    verify_outputs: bool = False
    tensorboard: bool = False

    def board(self, key: str, part: str) -> Path | None:
        """The TensorBoard folder of ``key``'s ``part`` (:func:`tensorboard_dir`), or None."""
        return tensorboard_dir(self.root, key, part) if self.tensorboard else None


def run_main(cfg: RunConfig, root: str | Path, model_file: str | None = None,
             checkpoint: str | None = None, progress: bool = True,
             device: str | torch.device | None = "auto", world: World | None = None,
             judge_model_file: str | None = None, verify_outputs: bool = False,
             tensorboard: bool = False) -> dict | None:
    """Run every stage of the main job into ``root`` on ``device`` (``"auto"``: a GPU if there
    is one); returns ``results.json``'s content. The device is no stage's input: a run
    started on one device resumes on another.

    ``model_file``/``judge_model_file``: the code (``FILE.py:FUNCTION``) that builds the
    user's model and the judge (:mod:`~interpretgan.models.loading`: no checkpoint names its
    code). ``world``: several ranks, each on its ``world.device`` (replacing ``device``). Every
    rank checks the inputs; rank 0 then runs the job and returns the results, the others join
    its training and fitting stages and return None.

    ``verify_outputs``: check every cached stage's outputs by content (SHA-256), not only by
    size and mtime (:class:`Stages`). ``tensorboard``: the training and fitting stages that run
    write TensorBoard events under ``root/tensorboard`` (:func:`tensorboard_dir`; no stage's
    input, so cached stages stay cached and write none)."""
    # Check everything before the run folder is touched.
    if tensorboard:
        require_tensorboard()
    world = world if world is not None and world.distributed else World(device=resolve_device(device))
    resolved = resolve_run(cfg, own_model=bool(model_file or checkpoint))
    user, user_data = None, None
    if model_file or checkpoint:
        user, user_data, layers = check_own_model(cfg, resolved, model_file, checkpoint,
                                                  judge_model_file, world.device)
    else:
        layers = check_trained(cfg, resolved, judge_model_file)
    if layers is not None:  # one spelling per layer (``relu1@0`` → ``relu1``)
        cfg = dataclasses.replace(cfg, layers=tuple(layers))
    if not world.main:  # the stages are rank 0's; this rank joins those it hands over
        serve_rank0(world)
        return None
    try:
        return _run_stages(Job(cfg, Path(root), resolved, world, user, user_data,
                               {"user": model_file, "judge": judge_model_file}, checkpoint,
                               progress, verify_outputs, tensorboard))
    finally:
        end_handover(world)


def _run_stages(job: Job) -> dict:
    """Rank 0's part of :func:`run_main`, once every input is checked. ``config.json`` is
    written with ``results.json``, once every stage it describes has finished: a failed or
    interrupted invocation leaves the one of the last finished run."""
    cfg, root = job.cfg, job.root
    root.mkdir(parents=True, exist_ok=True)
    with RunLock(root):
        for p in sweep_temp(root):
            log.info("removed a temp file left by a killed run: %s", p)
        clock = _WallClock(root)
        st = Stages(root, on_stage_end=clock.tick, verify=job.verify_outputs)

        # The classifiers: the user's, or the natural and the adversarially trained one.
        if job.user is not None:
            models = {"user": _save_user_model(st, job)}
        else:
            models = {key: _train_one(st, root, tcfg, key, job.world, job.progress,
                                      job.board(key, "train"))
                      for key, tcfg in _trained_configs(job.resolved).items()}

        # Per classifier: D*, generators, diagnosis, explanations.
        judges = _judges(cfg, models, job.user)
        diagnoses = {key: _classifier_stages(ClassifierStages(
            st, key, run, cfg, job.resolved.fit, job.world, job.progress, judge=judges[key],
            code={**job.code, "user": job.code.get(key)}, log_dir=job.board(key, "fit")))
            for key, run in models.items()}

        # The report: a pure function of the saved artifacts.
        results = assemble_results(root, diagnoses, st.timings, cfg, clock.tick())
        write_json(root / "config.json", {"run": dataclasses.asdict(cfg), "model_file": job.code["user"],
                                          "checkpoint": job.checkpoint})
        write_json(root / "results.json", results)
        write_main_report(results, root)
        return results


def _judges(cfg: RunConfig, models: dict[str, Path], user) -> dict[str, Path | None]:
    """Control (a), per classifier: each trained classifier is judged by the other; a user's
    model (or a natural classifier trained alone) by ``--judge``."""
    if user is not None or len(models) == 1:
        return {key: Path(cfg.judge) if cfg.judge is not None else None for key in models}
    return {"natural": models["adversarially_trained"] / "checkpoints" / "final.pt",
            "adversarially_trained": models["natural"] / "checkpoints" / "final.pt"}


def _save_user_model(st: Stages, job: Job) -> Path:
    """Stage ``train:user``: the user's classifier saved as ``root/user/checkpoints/final.pt``
    (its file, weights, input normalisation and data config, image size included). Its key is
    the content of the model file and of the checkpoint, the data set, the image size, the
    normalisation and how its output is read. Returns its run folder."""
    root, cfg, model_file, checkpoint = job.root, job.cfg, job.code["user"], job.checkpoint
    net, data = job.user, job.user_data
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
               progress: bool, log_dir: Path | None = None) -> Path:
    """Stage ``train:<key>``: train one of the two classifiers on every rank; returns its run
    folder. Its key is the training config, and the data's content where no checksums pin it
    (not ``log_dir``, where TensorBoard events go when the stage runs)."""

    run = root / key
    inputs = result_config(tcfg)  # (how often it checkpoints is no input)
    if unpinned(tcfg.data):
        inputs = [inputs, content_digest(load_split(tcfg.data, "train")),
                  content_digest(load_split(tcfg.data, "test"))]
    st.run(f"train:{key}", inputs, [run / "checkpoints" / "final.pt"],
           lambda: world.everyone(_train_task, tcfg, run, progress, log_dir), clean=[run],
           recorded=[run / n for n in ("checkpoints", "config.json", "metrics.json", "metrics.jsonl")])
    return run


def _train_task(world: World, tcfg: TrainConfig, run: Path, progress: bool,
                log_dir: Path | None = None) -> None:
    """Every rank's part of stage ``train:<key>``."""

    train_classifier(tcfg, run, progress=progress and world.main, device=world.device, world=world,
                     log_dir=log_dir)


def _fit_task(world: World, ckpt: Path, data: DataConfig, fit_cfg: FitConfig, fit_dir: Path,
              layers: list[str] | None, dstar_images: int, progress: bool,
              model_file: str | None = None, log_dir: Path | None = None) -> None:
    """Every rank's part of stage ``fit:<key>``: its share of the layers; rank 0 summarises."""

    model = load_model(ckpt, world.device, model_file=model_file)
    test = load_split(data, "test")
    fit_and_summarize(model, data, fit_cfg, fit_dir, layers, dstar_indices=dstar_indices(test, dstar_images),
                      progress=progress and world.main, world=world, log_dir=log_dir)


@dataclasses.dataclass
class ClassifierStages:
    """One classifier's stages (:func:`_classifier_stages`): ``run`` its folder, ``judge`` the
    checkpoint of the independent classifier for control (a) (``acc_judge``) or None, ``code``
    the model files typed for it and for the judge (``{"user": …, "judge": …}``; None for zoo
    checkpoints); ``log_dir`` the fit's TensorBoard folder or None (no input of any stage)."""

    st: Stages
    key: str
    run: Path
    cfg: RunConfig
    fit_cfg: FitConfig
    world: World
    progress: bool
    judge: Path | None = None
    code: dict = dataclasses.field(default_factory=dict)
    log_dir: Path | None = None

    @property
    def ckpt(self) -> Path:
        return self.run / "checkpoints" / "final.pt"

    def load(self) -> nn.Module:
        """The classifier, on rank 0's device."""
        return load_model(self.ckpt, self.world.device, model_file=self.code.get("user"))


def _classifier_stages(c: ClassifierStages) -> dict:
    """Stages ``dstar:<key>``, ``fit:<key>``, ``diagnose:<key>``, ``explain:<key>`` for the
    classifier in ``c.run``, moved to rank 0's device once (the fit runs on every rank's
    device). Returns its diagnosis."""
    model = c.load()
    data = checkpoint_data_config(c.ckpt, c.cfg.dataset, data_dir=c.cfg.data_dir)
    test = load_split(data, "test")
    trained = [c.st.key(f"train:{c.key}"), file_digest(c.ckpt)]  # the stage's key and its output
    if unpinned(data):  # files without pinned checksums can change between runs
        trained.append([content_digest(load_split(data, "train")), content_digest(test)])
    dkey = _dstar_stage(c, model, test, trained)
    fkey = _fit_stage(c, data, trained)
    _diagnose_stage(c, model, test, dkey, fkey)
    ex_dir = c.run / "explain"
    c.st.run(f"explain:{c.key}", [fkey, c.cfg.explain_images, c.cfg.attack], [ex_dir / "explain.json"],
             recorded=[ex_dir], fn=lambda: explain_run(c.run, c.cfg.explain_images, c.cfg.attack,
                                                       data_dir=c.cfg.data_dir, model=c.load(),
                                                       device=c.world.device))
    return read_json(c.run / "diagnosis.json")


def _dstar_stage(c: ClassifierStages, model: nn.Module, test, trained: list) -> str:
    """Stage ``dstar:<key>``: the adversarial set D* (``dstar.pt``); returns its key."""
    dpath, cfg = c.run / "dstar.pt", c.cfg
    return c.st.run(f"dstar:{c.key}", [trained, cfg.attack, cfg.dstar_images, cfg.seed], [dpath],
                    lambda: build_dstar(model, test, cfg.attack, cfg.dataset, cfg.dstar_images,
                                        cfg.seed, dpath, progress=c.progress))


def _fit_stage(c: ClassifierStages, data: DataConfig, trained: list) -> str:
    """Stage ``fit:<key>``: the generators, fitted on every rank; returns its key."""
    fit_dir, layers = c.run / "fit", list(c.cfg.layers) or None
    return c.st.run(f"fit:{c.key}", [trained, dataclasses.asdict(c.fit_cfg), layers, c.cfg.dstar_images],
                    [fit_dir / "config.json", fit_dir / "summary.json"],
                    lambda: c.world.everyone(_fit_task, c.ckpt, data, c.fit_cfg, fit_dir, layers,
                                             c.cfg.dstar_images, c.progress, c.code.get("user"),
                                             c.log_dir),
                    clean=[fit_dir])


def _diagnose_stage(c: ClassifierStages, model: nn.Module, test, dkey: str, fkey: str) -> None:
    """Stage ``diagnose:<key>``: Acc_i/Vul_i and the rest (``diagnosis.json``); its key holds
    the judge's content (and its code's)."""
    device, diag_path = c.world.device, c.run / "diagnosis.json"

    def diagnose():
        gans = {n: g.to(device) for n, g in load_generators(c.run / "fit", test.shape[0]).items()}
        dstar = load_checkpoint(c.run / "dstar.pt")
        judge_net = None
        if c.judge is not None:  # on the model's device, checked on two D* images
            judge_net = load_model(c.judge, device, model_file=c.code.get("judge"),
                                 flag="--judge-model-file")
            _judge_fits(judge_net, model, dstar["x"][:2].to(device), f"judge {c.judge}")
        doc = diagnose_model(model, gans, dstar, test.num_classes, judge=judge_net)
        classes = list(getattr(test, "classes", None) or range(test.num_classes))
        write_json(diag_path, {**doc, "classes": [str(k) for k in classes],
                               "output": output_selection(model)})

    judge_key = file_digest(c.judge) if c.judge is not None else None
    if c.judge is not None and c.code.get("judge"):  # the judge's code too
        judge_key = [judge_key, file_digest(c.code["judge"].rpartition(":")[0])]
    c.st.run(f"diagnose:{c.key}", [dkey, fkey, judge_key], [diag_path], diagnose)
