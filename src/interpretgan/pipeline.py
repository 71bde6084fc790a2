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
import hashlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from .config import DataConfig, FitConfig, RunConfig, TrainConfig, resolve_run, result_config
from .data import file_digest, load_split
from .devices import resolve_device
from .distributed import World, follow, release
from .fitting import check_fit_data
from .layers import default_layers
from .loading import ModelFileError, load_any, load_model_file, model_file_record  # noqa: F401 (API)
from .runs import (NonFiniteError, RunLock, fsync_dir, load_checkpoint, manifest, manifest_mismatch,
                   read_json, save_checkpoint, sweep_temp, to_json, write_json)

log = logging.getLogger(__name__)

MODEL_KEYS = ("natural", "adversarially_trained")

# Bumped when a stage's code changes its results: part of the stage's key, so run folders
# written by older code redo that stage instead of reusing outputs it would now compute
# differently (or could not read).
STAGE_VERSIONS = {"train": 1, "dstar": 1, "fit": 2, "diagnose": 6, "explain": 2}


def _key(obj) -> str:
    return hashlib.sha256(to_json(obj).encode()).hexdigest()[:16]


def read_record(path: Path, fields: dict[str, type | tuple[type, ...]], fix: str,
                optional: dict[str, type | tuple[type, ...]] | None = None) -> dict:
    """A JSON object the run folder keeps for itself (a stage record, ``wall_time.json``),
    with ``fields`` (and, where present, ``optional`` fields) of their types; a damaged or
    foreign file raises a one-line ``ValueError`` naming it and ``fix`` (what to do)."""
    try:
        doc = read_json(path)
    except (ValueError, UnicodeDecodeError) as e:  # empty, torn, not JSON
        why = f"not JSON: {' '.join(str(e).split())}" if path.stat().st_size else "empty"
        raise ValueError(f"{path} is damaged ({why}); {fix}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is damaged (not a JSON object); {fix}")
    bad = [f for f, t in fields.items() if not _of_type(doc.get(f), t)]
    bad += [f for f, t in (optional or {}).items() if f in doc and not _of_type(doc[f], t)]
    if bad:
        raise ValueError(f"{path} is damaged ({', '.join(bad)} missing or of the wrong type); {fix}")
    return doc


def _of_type(value, types: type | tuple[type, ...]) -> bool:
    """``isinstance``, where true and false are no numbers."""
    types = types if isinstance(types, tuple) else (types,)
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))


_RECORD = {"key": str, "done": bool}
_RECORD_OPTIONAL = {"seconds": (int, float)}


def _stage_fix(name: str) -> str:
    return f"delete it and rerun the same command to redo stage {name}"


class Stages:
    """Runs named stages once per input key; records timings in ``stages/<name>.json``.

    A finished stage's record holds the manifest of what it wrote (size, mtime, SHA-256 of
    every file): a stage is cached only while its outputs are those files. Checked cheaply on
    every run (a file of the recorded size and mtime is trusted, one whose mtime changed is
    hashed), by content with ``verify``. A difference (a file missing, added, resized or
    changed by another command) redoes the stage from scratch, and its downstream stages through
    their keys. A record without a manifest (run folders from before) is trusted as far as its
    outputs exist and given one."""

    def __init__(self, root: Path, on_stage_end: Callable[[], object] | None = None,
                 verify: bool = False):
        self.root = root
        self.dir = root / "stages"
        self.on_stage_end = on_stage_end  # called after every stage that ran (e.g. a clock)
        self.verify = verify  # hash every recorded output, not only those whose mtime changed
        self.dir.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = {}
        self.ran: list[str] = []

    def _path(self, name: str) -> Path:
        return self.dir / (name.replace(":", "__") + ".json")

    def record(self, name: str) -> dict | None:
        """Stage ``name``'s record; None if it never ran (a damaged one: a ``ValueError``
        that names it)."""
        path = self._path(name)
        return (read_record(path, _RECORD, _stage_fix(name), _RECORD_OPTIONAL) if path.exists()
                else None)

    def key(self, name: str) -> str | None:
        """The key of what stage ``name`` last ran (or is running) with — its inputs, and how
        often it was redone over outputs it did not write; None if it never ran."""
        rec = self.record(name)
        return None if rec is None else _outputs_key(rec)

    def run(self, name: str, inputs, outputs: list[Path], fn: Callable[[], object],
            clean: list[Path] = (), recorded: list[Path] | None = None) -> str:
        """Run ``fn`` unless stage ``name`` finished with the same ``inputs`` and its outputs are
        still the files it recorded. Returns the key that stands for its outputs.

        ``outputs``: files that must exist; ``recorded``: the files and folders whose every
        file goes into the stage's manifest (default: ``outputs`` and ``clean``).
        When the inputs of a finished stage changed, its ``clean`` paths (the outputs the stage
        rebuilds as a whole: a classifier's folder, the generators) are moved aside and deleted
        only once ``fn`` has finished. If ``fn`` raises, they are put back with the old record,
        so a failed change leaves the finished stage as it was. A kill (or Ctrl-C) leaves them
        aside: the same command resumes the change, the old command gets them back. Outputs
        written in place (D*, the diagnosis) are replaced atomically when the stage finishes.
        """
        key = _key([STAGE_VERSIONS.get(name.partition(":")[0], 1), inputs])
        files = list(recorded) if recorded is not None else [*outputs, *clean]
        rec = self.record(name)
        if rec and rec.get("discard"):  # a finished change killed while deleting the old outputs
            _remove(rec.pop("discard"))
            write_json(self._path(name), rec)
        if rec and rec.get("aside") and rec.get("aside_key") == key:  # back to the old inputs
            log.info("stage %s: restoring the outputs of its earlier inputs", name)
            self._restore(name, rec, clean)
            rec = self.record(name)
        if rec and rec.get("key") == key and rec.get("done") and all(p.exists() for p in outputs):
            foreign = self._foreign(name, rec, files)
            if foreign is None:
                self.timings[name] = rec.get("seconds", 0.0)
                log.info("stage %s: cached", name)
                return _outputs_key(rec)
            log.warning("stage %s: %s since it ran; redoing it", name, foreign)
            rec = {"key": key, "done": False, "seconds": 0.0, "generation": rec.get("generation", 0) + 1}
            write_json(self._path(name), rec)  # the plan first, then the removal
            _remove([*clean, *files])
        record, started_change = self._plan(name, rec, key, clean)
        t0 = time.perf_counter()
        log.info("stage %s: running", name)
        try:
            fn()
        except Exception as e:
            if started_change:  # this command's change failed: the finished stage comes back
                log.info("stage %s failed: its earlier outputs are back in place", name)
                self._restore(name, record, clean)
            if isinstance(e, NonFiniteError):
                raise NonFiniteError(f"stage {name}: {e}") from None
            raise
        seconds = record.get("seconds", 0.0) + time.perf_counter() - t0
        done = {"key": key, "done": True, "seconds": seconds,
                **{k: record[k] for k in ("generation",) if k in record},
                "outputs": manifest(files, self.root)}
        if record.get("aside"):
            write_json(self._path(name), {**done, "discard": record["aside"]})
            _remove(record["aside"])
        write_json(self._path(name), done)
        self.timings[name] = seconds
        self.ran.append(name)
        if self.on_stage_end is not None:
            self.on_stage_end()
        return _outputs_key(done)

    def _plan(self, name: str, rec: dict | None, key: str, clean: list[Path]) -> tuple[dict, bool]:
        """The record of a stage about to run (written, and its moves aside carried out), and
        whether this command started a change of a finished stage."""
        started_change = False
        if rec and rec.get("key") == key:  # resuming this very stage (perhaps a change)
            record = rec
        else:
            record = {"key": key, "done": False, "seconds": 0.0}
            if rec:
                log.info("stage %s: inputs changed, redoing it", name)
            if rec and rec.get("aside"):  # an earlier change was killed: its partial outputs go
                _remove(clean)
                record.update({k: rec[k] for k in ("aside", "aside_key", "aside_seconds", "aside_record")
                               if k in rec})
            elif rec and rec.get("done") and any(p.exists() for p in clean):
                record.update(aside=[str(_aside(p)) for p in clean if p.exists()],
                              aside_key=rec["key"], aside_seconds=rec.get("seconds", 0.0),
                              aside_record={k: rec[k] for k in ("generation", "outputs") if k in rec})
                started_change = True
            elif rec:  # a killed run of other inputs: its partial outputs go
                _remove(clean)
        record["done"] = False
        write_json(self._path(name), record)  # the plan first, then the moves it names
        self._move_aside(record, clean)
        return record, started_change

    def _foreign(self, name: str, rec: dict, files: list[Path]) -> str | None:
        """How the files of finished stage ``name`` differ from those it recorded (one phrase
        naming the file), or None. A record without a manifest is trusted and given one; a
        manifest whose mtimes were refreshed (same content) is written back."""
        if "outputs" not in rec:
            write_json(self._path(name), {**rec, "outputs": manifest(files, self.root)})
            return None
        diff, fresh = manifest_mismatch(rec["outputs"], files, self.root, full=self.verify)
        if diff is None and fresh != rec["outputs"]:
            write_json(self._path(name), {**rec, "outputs": fresh})
        return diff

    @staticmethod
    def _move_aside(record: dict, clean: list[Path]) -> None:
        """Carry out the moves a record names (again after a kill between plan and move)."""
        for p in clean:
            a = _aside(p)
            if str(a) in record.get("aside", []) and p.exists() and not a.exists():
                os.replace(p, a)
                fsync_dir(p.parent)

    def _restore(self, name: str, rec: dict, clean: list[Path]) -> None:
        """The outputs kept aside back in place (replacing partial new ones), the old record
        back. Safe to repeat after a kill part way."""
        for p in clean:
            a = _aside(p)
            if str(a) in rec["aside"] and a.exists():
                _remove([p])
                os.replace(a, p)
                fsync_dir(p.parent)
        write_json(self._path(name), {"key": rec["aside_key"], "done": True,
                                      "seconds": rec.get("aside_seconds", 0.0),
                                      **rec.get("aside_record", {})})


def _outputs_key(rec: dict) -> str:
    """The key downstream stages see: the input key, changed each time the stage was redone
    because its outputs were not the ones it wrote (``generation``)."""
    return _key([rec["key"], rec["generation"]]) if rec.get("generation") else rec["key"]


def _aside(p: Path) -> Path:
    """Where a stage's old output waits while the stage is redone."""
    return p.parent / f".{p.name}.replaced"


def _remove(paths) -> None:
    for p in paths:
        p = Path(p)
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()

def main_run_of(path: str | Path) -> Path | None:
    """The main job's run folder that ``path`` is (or is inside), found by its stage records
    (``RUN/stages/<stage>__<model>.json``); None when there is none."""
    path = Path(path).resolve()
    for p in (path, *path.parents):
        if (p / "stages").is_dir() and any((p / "stages").glob("*__*.json")):
            return p
    return None


def refuse_inside_main_run(out: str | Path, option: str) -> None:
    """A command writing into ``out`` (``train``, ``fit``, ``explain``) is refused in one line
    (``ValueError``) when ``out`` is inside a main job's run folder: its stages own every folder
    there, and ``interpretgan run`` redoes a stage whose files another command changed."""
    root = main_run_of(out)
    if root is not None:
        raise ValueError(f"{out} is inside the run folder {root} of `interpretgan run`, whose "
                         f"stages own it: pass {option} DIR outside {root} (e.g. "
                         f"{root.parent / (root.name + '-' + Path(out).name)})")


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
            from .models import with_normalization
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
    from .report import write_main_report

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


def _trained_configs(resolved) -> dict[str, TrainConfig]:
    """``{model key: training config}`` of the classifiers the run trains: the natural one, and
    the adversarially trained one unless the run has none (the CelebFaces presets)."""
    out = {"natural": resolved.natural}
    if resolved.adversarial is not None:
        out["adversarially_trained"] = resolved.adversarial
    return out


def _untrained(tcfg: TrainConfig) -> tuple[nn.Module, torch.Tensor]:
    """An untrained instance of the classifier ``tcfg`` trains and two of its test images
    (B, C, H, W), for checking layer names on one forward."""
    from .data import images_at, load_split
    from .training import build_model, dataset_classes, dataset_shape

    test = load_split(dataclasses.replace(tcfg.data, test_subset=2), "test")
    x, _ = images_at(test, torch.arange(len(test)))
    return build_model(tcfg.model, dataset_shape(test), dataset_classes(test)).eval(), x


def _example(data: DataConfig) -> torch.Tensor:
    """Two test images (B, C, H, W) of ``data`` (the user's model's input size)."""
    from .data import images_at, load_split

    test = load_split(dataclasses.replace(data, test_subset=2), "test")
    return images_at(test, torch.arange(len(test)))[0]


def _check_layers(model: nn.Module, x: torch.Tensor | None, layers: list[str] | None,
                  what: str) -> list[str] | None:
    """Every named layer exists in ``model`` and, given an input ``x`` (B, C, H, W), is reached
    by one forward (``relu1@9`` of a module called once is not); returns the names in one
    spelling each (:func:`~interpretgan.layers.canonical_names`: ``relu1@0`` of a module
    called once is ``relu1``). Two spellings of one layer, or a name given twice, are
    refused. Each failure is one line (``ValueError``)."""
    from .layers import LayerNameError, canonical_names, resolve

    if layers is not None and not layers:
        raise ValueError("the layer list is empty: name at least one layer, or leave --layers out")
    if layers is not None and len(set(layers)) < len(layers):
        raise ValueError(f"a layer is named twice in {','.join(layers)}")
    for n in layers or []:
        try:
            resolve(model, n)
        except KeyError as e:
            raise ValueError(f"{what} has no layer {n!r}: {e}; `interpretgan layers` lists them") from None
    if x is None or layers is None:
        return layers
    try:
        return canonical_names(model, x, layers)
    except LayerNameError as e:
        raise ValueError(f"{what}: {e}; `interpretgan layers` lists them") from None


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


def _user_data(net: nn.Module, cfg: RunConfig, layers: list[str] | None) -> DataConfig:
    """The data config the user's model is diagnosed on: the run's data set at
    ``cfg.image_size``, or else at the first size the model accepts of the data set's native
    size and 32. Checks, each failing in one line (``ValueError``): the model takes the
    data's channels and gives ``(B, classes)`` logits for the data set's classes (read as
    ``cfg.output`` selects, :func:`_read_logits`), the normalisation has 1 or C values per
    statistic, and every named layer is reached."""
    from .data import images_at, load_split, native_size
    from .layers import capture
    from .models import input_channels
    from .registry import UnknownNameError

    if cfg.image_size is not None:
        sizes = [cfg.image_size]
    else:
        sizes = list(dict.fromkeys(s for s in (native_size(cfg.dataset, cfg.data_dir), 32) if s))
    tried = []
    net.eval()
    for size in sizes:
        data = DataConfig(dataset=cfg.dataset, data_dir=cfg.data_dir, image_size=size, verify=cfg.verify)
        test = load_split(dataclasses.replace(data, test_subset=2), "test")
        x, _ = images_at(test, torch.arange(len(test)))
        c = x.shape[1]
        if cfg.normalize is not None and len(cfg.normalize) not in (2, 2 * c):
            raise ValueError(f"--normalize has {len(cfg.normalize)} values; the {cfg.dataset} "
                             f"images have {c} channel(s): give MEAN,STD or {c} means then "
                             f"{c} standard deviations")
        try:
            with torch.no_grad():
                out = net(x)
        except Exception as e:  # the user's forward may raise anything on a wrong shape
            want = input_channels(net)
            if want is not None and want != c:
                kind = {1: "grey-scale (1 channel)", 3: "RGB (3 channels)"}.get(c, f"{c}-channel")
                raise ValueError(f"the {cfg.dataset} images are {kind}, but your model's first "
                                 f"convolution takes {want} channel(s): diagnose it on a data set "
                                 f"with {want}-channel images") from None
            tried.append(f"{tuple(x.shape)}: {_first_line(e)}")
            continue
        out = _read_logits(net, out, cfg.output)
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(x):
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"your model's output for input {tuple(x.shape)} is {got}, not "
                             f"({len(x)}, classes) logits: return the logits from forward")
        if out.shape[1] != test.num_classes:
            raise ValueError(f"your model outputs {out.shape[1]} classes, but the {cfg.dataset} "
                             f"data have {test.num_classes}"
                             + (f" ({', '.join(map(str, test.classes))})" if test.classes else ""))
        if layers:
            try:
                capture(net, x, layers, stop_early=False)
            except UnknownNameError as e:
                raise ValueError(f"your model: {e}") from None
        log.info("your model takes %s inputs", tuple(x.shape[1:]))
        return data
    raise ValueError(f"your model accepts none of the input shapes tried on {cfg.dataset}: "
                     + "; ".join(tried) + "; pass --image-size N (the side it was trained on)")


def _read_logits(net: nn.Module, out, selector: str | None) -> torch.Tensor:
    """The logits in ``out``, what ``net``'s forward returned on one batch, picked by
    ``selector`` (None: found, :func:`~interpretgan.models.read_output`); from now on ``net``'s
    forward returns them (:func:`~interpretgan.models.select_output`: the one place every stage
    reads the user's model through). A selector its output lacks is one line (``ValueError``)."""
    from .models import read_output, select_output

    logits, used = read_output(out, selector)
    if used is not None:
        select_output(net, used, auto=selector is None)
        log.info("your model's logits: its output's %s%s", used, " (found; --output picks another)"
                 if selector is None else "")
    return logits


def _check_readings(net: nn.Module, data: DataConfig, layers: list[str] | None, fit: FitConfig) -> None:
    """Every explained layer of the user's model can be read by C (a token layer without the
    grid ``fit.tokens`` asks for fails in one line), checked on two test images."""
    from .data import images_at, load_split
    from .fitting import check_readings

    test = load_split(dataclasses.replace(data, test_subset=2), "test")
    check_readings(net, images_at(test, torch.arange(len(test)))[0], layers, fit)


def largest_batch(cfg: RunConfig, fit_cfg: FitConfig, layers: list[str]) -> int:
    """The most images the job puts through the classifier in one forward: a D* attack batch
    (500 at most), the fit's generated images of every member (batch × layers × seeds, in
    one process), an agreement batch (250 at most), an Integrated Gradients batch (64)."""
    return max(min(500, cfg.dstar_images), fit_cfg.batch_size * len(layers) * len(fit_cfg.generator_seeds),
               min(250, fit_cfg.eval_images), min(64, 32 * cfg.explain_images))


def _check_batch_size(net: nn.Module, data: DataConfig, n: int, device: torch.device) -> None:
    """Before any stage: the user's model takes a batch of ``n`` images (the largest the job
    uses) on ``device`` and gives ``(n, classes)`` logits, else one line (``ValueError``). The
    model is back on the CPU afterwards."""
    from .data import images_at, load_split

    test = load_split(dataclasses.replace(data, test_subset=2), "test")
    x, _ = images_at(test, torch.arange(len(test)))
    x = x.repeat(-(-n // len(x)), 1, 1, 1)[:n].to(device)  # (n, C, H, W)
    try:
        with torch.no_grad():
            out = net.to(device).eval()(x)
    except Exception as e:  # the user's forward may raise anything
        raise ValueError(f"your model fails on a batch of {n} images (the largest this job uses; "
                         f"it took {len(test)}): {_first_line(e)}; make its forward work for any "
                         "batch size") from None
    finally:
        net.to("cpu")
    if not isinstance(out, torch.Tensor) or tuple(out.shape[:1]) != (n,):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"your model's output for a batch of {n} images is {got}, not ({n}, "
                         "classes) logits: make its forward work for any batch size")


def _user_model(st: Stages, root: Path, cfg: RunConfig, model_file: str, checkpoint: str,
                net: nn.Module, data: DataConfig) -> Path:
    """Stage ``train:user``: the user's classifier saved as ``root/user/checkpoints/final.pt``
    (its file, weights, input normalisation and data config, image size included). Its key is
    the content of the model file and of the checkpoint, the data set, the image size, the
    normalisation and how its output is read. Returns its run folder."""
    from .models import output_selection

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
    from .data import content_digest, load_split, unpinned

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
    from .training import train_classifier

    train_classifier(tcfg, run, progress=progress and world.main, device=world.device, world=world)


def _fit_task(world: World, ckpt: Path, data: DataConfig, fit_cfg: FitConfig, fit_dir: Path,
              layers: list[str] | None, dstar_images: int, progress: bool,
              model_file: str | None = None) -> None:
    """Every rank's part of stage ``fit:<key>``: its share of the layers; rank 0 summarises."""
    from .data import load_split
    from .diagnose import dstar_indices
    from .fitting import fit_and_summarize

    model = load_any(ckpt, world.device, model_file=model_file)
    test = load_split(data, "test")
    fit_and_summarize(model, data, fit_cfg, fit_dir, layers, dstar_indices=dstar_indices(test, dstar_images),
                      progress=progress and world.main, world=world)


def _load_judge(judge: str | Path, judge_model_file: str | None,
                device: str | torch.device = "cpu") -> nn.Module:
    """The ``--judge`` classifier (built by ``--judge-model-file`` where it was saved from a
    model file), or one line (``ValueError``)."""
    try:
        return load_any(Path(judge), device, model_file=judge_model_file, flag="--judge-model-file")
    except ModelFileError:
        raise
    except Exception as e:  # torch.load / a checkpoint that fits no model may raise anything
        raise ValueError(f"--judge {judge}: not a classifier checkpoint ({_first_line(e)})") from None


def _check_judge(judge: str, judge_model_file: str | None, model: nn.Module,
                 data: DataConfig) -> None:
    """Before the run: the ``--judge`` checkpoint loads and takes the images ``model`` takes
    (``data``'s size), giving the same (B, classes) output shape; else one line (``ValueError``)."""
    net = _load_judge(judge, judge_model_file)
    _judge_fits(net, model.eval(), _example(data), f"--judge {judge}")


def _judge_fits(judge: nn.Module, model: nn.Module, x: torch.Tensor, what: str) -> None:
    """``judge`` takes ``x`` (B, C, H, W), on the device of both, and gives ``model``'s output
    shape; else one line (``ValueError``)."""
    with torch.no_grad():
        want = tuple(model(x).shape)
        try:
            got = judge(x)
        except Exception as e:  # a wrong input shape fails anywhere in the judge's forward
            raise ValueError(f"{what} does not take the model's input {tuple(x.shape[1:])}: "
                             f"{_first_line(e)}") from None
    got = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
    if got != want:
        raise ValueError(f"{what} gives output {got} on input {tuple(x.shape)} where the model "
                         f"gives {want}: the judge must take the same input size and classes")


def _diagnose_one(st: Stages, key: str, run: Path, cfg: RunConfig, fit_cfg: FitConfig,
                  world: World, progress: bool, judge: Path | None = None,
                  code: dict | None = None) -> dict:
    """Stages ``dstar:<key>``, ``fit:<key>``, ``diagnose:<key>``, ``explain:<key>`` for the
    classifier in ``run``, moved to rank 0's device once (the fit runs on every rank's
    device). ``judge``: the checkpoint of the independent classifier for control (a)
    (``acc_judge``; its content is part of the diagnose key), or None. ``code``: the model
    files typed for this classifier and for the judge (``{"user": …, "judge": …}``; None for
    zoo checkpoints). Returns its diagnosis."""
    from .data import checkpoint_data_config, content_digest, load_split, unpinned
    from .diagnose import build_dstar, diagnose_model
    from .explain import explain_run
    from .fitting import load_generators
    from .models import output_selection

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


def rebuild_report(root: str | Path) -> dict:
    """``results.json`` + ``report/index.html`` again from a finished run's saved artifacts
    (diagnoses, fit summaries, stage timings, figures): never trains or attacks."""
    from .config import from_dict
    from .report import write_main_report

    root = Path(root)
    saved = read_json(root / "config.json")
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
    """The run's cost in units of one natural training epoch measured in this run (the median
    of the natural model's per-epoch step times): the quick preset's "≤ 40 natural epochs" budget."""
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
