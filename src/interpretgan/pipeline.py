"""The main job: ``interpretgan run``.

Stages (each cached under ``RUN/stages/<name>.json`` with a key of its inputs — configs, the
content of the files it reads, the version of its code; a stage whose key is unchanged and
whose outputs exist is skipped, a stage whose inputs changed is redone from scratch with its
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
user's model and checkpoint); one process at a time works in a run folder (``RUN/.lock``).

With several ranks (``--devices N`` or torchrun), rank 0 runs the job as one process does —
stage records, D*, diagnosis, explanations, report — and hands the two distributed parts to
every rank (:meth:`~interpretgan.distributed.World.everyone`): classifier training
(data-parallel) and generator fitting (layers shared out). The number of ranks is no
stage's input: the cache and the report do not depend on it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import inspect
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from .config import DataConfig, FitConfig, RunConfig, TrainConfig, resolve_run, result_config
from .data import file_digest
from .devices import resolve_device
from .distributed import World, follow, release
from .layers import default_layers
from .runs import (NonFiniteError, RunLock, fsync_dir, load_checkpoint, read_json, save_checkpoint,
                   sweep_temp, to_json, write_json)

log = logging.getLogger(__name__)

MODEL_KEYS = ("natural", "adversarially_trained")

# Bumped when a stage's code changes its results: part of the stage's key, so run folders
# written by older code redo that stage instead of reusing outputs it would now compute
# differently (or could not read).
STAGE_VERSIONS = {"train": 1, "dstar": 1, "fit": 2, "diagnose": 5, "explain": 2}


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
    """Runs named stages once per input key; records timings in ``stages/<name>.json``."""

    def __init__(self, root: Path, on_stage_end: Callable[[], object] | None = None):
        self.dir = root / "stages"
        self.on_stage_end = on_stage_end  # called after every stage that ran (e.g. a clock)
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
        """The input key stage ``name`` last ran (or is running) with; None if it never ran."""
        rec = self.record(name)
        return None if rec is None else rec["key"]

    def run(self, name: str, inputs, outputs: list[Path], fn: Callable[[], object],
            clean: list[Path] = ()) -> str:
        """Run ``fn`` unless stage ``name`` finished with the same ``inputs``. Returns the key.

        When the inputs of a finished stage changed, its ``clean`` paths (the outputs the stage
        rebuilds as a whole: a classifier's folder, the generators) are moved aside and deleted
        only once ``fn`` has finished. If ``fn`` raises, they are put back with the old record,
        so a failed change leaves the finished stage as it was. A kill (or Ctrl-C) leaves them
        aside: the same command resumes the change, the old command gets them back. Outputs
        written in place (D*, the diagnosis) are replaced atomically when the stage finishes.
        """
        key = _key([STAGE_VERSIONS.get(name.partition(":")[0], 1), inputs])
        rec = self.record(name)
        if rec and rec.get("discard"):  # a finished change killed while deleting the old outputs
            _remove(rec.pop("discard"))
            write_json(self._path(name), rec)
        if rec and rec.get("aside") and rec.get("aside_key") == key:  # back to the old inputs
            log.info("stage %s: restoring the outputs of its earlier inputs", name)
            self._restore(name, rec, clean)
            rec = self.record(name)
        if rec and rec.get("key") == key and rec.get("done") and all(p.exists() for p in outputs):
            self.timings[name] = rec.get("seconds", 0.0)
            log.info("stage %s: cached", name)
            return key
        started_change = False
        if rec and rec.get("key") == key:  # resuming this very stage (perhaps a change)
            record = rec
        else:
            record = {"key": key, "done": False, "seconds": 0.0}
            if rec:
                log.info("stage %s: inputs changed, redoing it", name)
            if rec and rec.get("aside"):  # an earlier change was killed: its partial outputs go
                _remove(clean)
                record.update({k: rec[k] for k in ("aside", "aside_key", "aside_seconds")})
            elif rec and rec.get("done") and any(p.exists() for p in clean):
                record.update(aside=[str(_aside(p)) for p in clean if p.exists()],
                              aside_key=rec["key"], aside_seconds=rec.get("seconds", 0.0))
                started_change = True
            elif rec:  # a killed run of other inputs: its partial outputs go
                _remove(clean)
        record["done"] = False
        write_json(self._path(name), record)  # the plan first, then the moves it names
        self._move_aside(record, clean)
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
        done = {"key": key, "done": True, "seconds": seconds}
        if record.get("aside"):
            write_json(self._path(name), {**done, "discard": record["aside"]})
            _remove(record["aside"])
        write_json(self._path(name), done)
        self.timings[name] = seconds
        self.ran.append(name)
        if self.on_stage_end is not None:
            self.on_stage_end()
        return key

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
                                      "seconds": rec.get("aside_seconds", 0.0)})


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

def load_model_file(spec: str) -> nn.Module:
    """``"path/to/file.py:build"`` → the module returned by ``build()``. Every way this can
    go wrong (no file, an import error, no such function, a function needing arguments, a
    result that is no ``nn.Module``) raises a one-line ``ValueError``."""
    path, _, fn = spec.partition(":")
    if not fn:
        raise ValueError(f"--model-file needs FILE.py:FUNCTION, got {spec!r}")
    if not Path(path).is_file():
        raise ValueError(f"--model-file {path}: no such file")
    s = importlib.util.spec_from_file_location(f"user_model_{_key(path)}", path)
    if s is None or s.loader is None:
        raise ValueError(f"--model-file {path}: cannot be imported as Python")
    mod = importlib.util.module_from_spec(s)
    try:
        s.loader.exec_module(mod)
    except Exception as e:  # the user's code may raise anything while it loads
        raise ValueError(f"--model-file {path} fails to import: {type(e).__name__}: {e}") from e
    build = getattr(mod, fn, None)
    if not callable(build):
        raise ValueError(f"{path} has no function {fn!r}")
    need = [p.name for p in inspect.signature(build).parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if need:
        raise ValueError(f"{path}:{fn} needs arguments ({', '.join(need)}); --model-file takes a "
                         f"function that builds the model without any (e.g. def build(): "
                         f"return {fn}(...))")
    try:
        net = build()
    except Exception as e:  # the user's code may raise anything
        raise ValueError(f"{path}:{fn}() failed: {type(e).__name__}: {e}") from e
    if not isinstance(net, nn.Module):
        raise ValueError(f"{path}:{fn}() returned {type(net).__name__}, not a torch.nn.Module")
    return net


def run_main(cfg: RunConfig, root: str | Path, model_file: str | None = None,
             checkpoint: str | None = None, progress: bool = True,
             device: str | torch.device | None = "auto", world: World | None = None) -> dict | None:
    """Run every stage of the main job into ``root`` on ``device`` (``"auto"``: a GPU if there
    is one); returns ``results.json``'s content. The device is no stage's input: a run
    started on one device resumes on another.

    ``world``: several ranks, each on its ``world.device`` (replacing ``device``). Every rank
    checks the inputs; rank 0 then runs the job and returns the results, the others join
    its training and fitting stages and return None."""
    # Check everything before the run folder is touched.
    world = world if world is not None and world.distributed else World(device=resolve_device(device))
    resolved = resolve_run(cfg, own_model=bool(model_file or checkpoint))
    layers = list(cfg.layers) or None
    user, user_data = None, None
    if model_file or checkpoint:
        if not (model_file and checkpoint):
            raise ValueError("--model-file and --checkpoint go together: give both")
        user = _load_user_model(model_file, checkpoint)
        _check_layers(user, layers, "your model")
        if cfg.normalize is not None:
            from .models import with_normalization
            with_normalization(user, cfg.normalize)
        user_data = _user_data(user, cfg, layers)
        _check_batch_size(user, user_data, largest_batch(cfg, resolved.fit, layers or default_layers(user)),
                          world.device)
        if cfg.judge is not None:
            _check_judge(cfg.judge, user, user_data)
    else:
        if cfg.judge is not None and resolved.adversarial is not None:
            raise ValueError("--judge is for your own model (--model-file) or a natural classifier "
                             "trained alone: the two trained classifiers are judged by each other")
        if cfg.normalize is not None:
            raise ValueError("--normalize wraps your own model: give it with --model-file and "
                             "--checkpoint (the trained classifiers take [0, 1] images)")
        for tcfg in _trained_configs(resolved).values():
            _check_layers(_untrained(tcfg), layers, f"the {tcfg.model.name} classifier")
    root = Path(root)
    if not world.main:  # the stages are rank 0's; this rank joins those it hands over
        follow(world)
        return None
    try:
        return _run_stages(cfg, root, resolved, layers, user, user_data, model_file, checkpoint,
                           progress, world)
    finally:
        release(world)


def _run_stages(cfg: RunConfig, root: Path, resolved, layers, user, user_data, model_file,
                checkpoint, progress: bool, world: World) -> dict:
    """Rank 0's part of :func:`run_main`, once every input is checked."""
    from .report import write_main_report

    root.mkdir(parents=True, exist_ok=True)
    with RunLock(root):
        for p in sweep_temp(root):
            log.info("removed a temp file left by a killed run: %s", p)
        write_json(root / "config.json", {"run": dataclasses.asdict(cfg), "model_file": model_file,
                                          "checkpoint": checkpoint})
        clock = _WallClock(root)
        st = Stages(root, on_stage_end=clock.tick)

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
                                           judge=judges[key])

        # The report: a pure function of the saved artifacts.
        results = assemble_results(root, diagnoses, st.timings, cfg, clock.tick())
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


def _untrained(tcfg: TrainConfig) -> nn.Module:
    """An untrained instance of the classifier ``tcfg`` trains (for checking layer names)."""
    from .data import load_split
    from .training import build_model, dataset_classes, dataset_shape

    test = load_split(dataclasses.replace(tcfg.data, test_subset=2), "test")
    return build_model(tcfg.model, dataset_shape(test), dataset_classes(test))


def _check_layers(model: nn.Module, layers: list[str] | None, what: str) -> None:
    """Every named layer exists in ``model`` (one line naming the first that does not)."""
    from .layers import resolve

    if layers is not None and not layers:
        raise ValueError("the layer list is empty: name at least one layer, or leave --layers out")
    if layers is not None and len(set(layers)) < len(layers):
        raise ValueError(f"a layer is named twice in {','.join(layers)}")
    for n in layers or []:
        try:
            resolve(model, n)
        except KeyError as e:
            raise ValueError(f"{what} has no layer {n!r}: {e}; `interpretgan layers` lists them") from None


def _load_user_model(model_file: str, checkpoint: str) -> nn.Module:
    """The user's ``build()`` with the checkpoint's weights (strictly matched)."""
    from .models import load_state_dict_strict

    net = load_model_file(model_file)
    ck = load_checkpoint(checkpoint)
    state = ck.get("state_dict", ck) if isinstance(ck, dict) else ck
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{checkpoint} holds no state_dict (a dict of tensors, or one under "
                         "'state_dict'): save it with torch.save(model.state_dict(), path)")
    load_state_dict_strict(net, state, checkpoint)
    return net


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


def _user_data(net: nn.Module, cfg: RunConfig, layers: list[str] | None) -> DataConfig:
    """The data config the user's model is diagnosed on: the run's data set at
    ``cfg.image_size``, or else at the first size the model accepts of the data set's native
    size and 32. Checks, each failing in one line (``ValueError``): the model takes the
    data's channels and gives ``(B, classes)`` logits for the data set's classes, the
    normalisation has 1 or C values per statistic, and every named layer is reached."""
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
    the content of the model file and of the checkpoint, the data set, the image size and the
    normalisation. Returns its run folder."""
    dest = root / "user" / "checkpoints" / "final.pt"
    path, _, fn = model_file.partition(":")
    normalize = list(cfg.normalize) if cfg.normalize is not None else None

    def save():
        save_checkpoint(dest, {
            "model_file": f"{Path(path).resolve()}:{fn}", "state_dict": net.state_dict(),
            "normalize": normalize, "config": {"data": dataclasses.asdict(data)}})

    st.run("train:user", {"function": fn, "source": file_digest(path), "checkpoint": file_digest(checkpoint),
                          "dataset": cfg.dataset, "image_size": data.image_size,
                          "normalize": normalize, "verify": data.verify},
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
           lambda: world.everyone(_train_task, tcfg, run, progress), clean=[run])
    return run


def _train_task(world: World, tcfg: TrainConfig, run: Path, progress: bool) -> None:
    """Every rank's part of stage ``train:<key>``."""
    from .training import train_classifier

    train_classifier(tcfg, run, progress=progress and world.main, device=world.device, world=world)


def _fit_task(world: World, ckpt: Path, data: DataConfig, fit_cfg: FitConfig, fit_dir: Path,
              layers: list[str] | None, dstar_images: int, progress: bool) -> None:
    """Every rank's part of stage ``fit:<key>``: its share of the layers; rank 0 summarises."""
    from .data import load_split
    from .diagnose import dstar_indices
    from .fitting import fit_and_summarize

    model = load_any(ckpt, world.device)
    test = load_split(data, "test")
    fit_and_summarize(model, data, fit_cfg, fit_dir, layers, dstar_indices=dstar_indices(test, dstar_images),
                      progress=progress and world.main, world=world)


def _check_judge(judge: str, model: nn.Module, data: DataConfig) -> None:
    """Before the run: the ``--judge`` checkpoint loads and takes the images ``model`` takes
    (``data``'s size), giving the same (B, classes) output shape; else one line (``ValueError``)."""
    from .data import images_at, load_split

    try:
        net = load_any(Path(judge), "cpu")
    except Exception as e:  # torch.load / a model file's code may raise anything
        raise ValueError(f"--judge {judge}: not a classifier checkpoint ({_first_line(e)})") from None
    test = load_split(dataclasses.replace(data, test_subset=2), "test")
    x, _ = images_at(test, torch.arange(len(test)))
    _judge_fits(net, model.eval(), x, f"--judge {judge}")


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
                  world: World, progress: bool, judge: Path | None = None) -> dict:
    """Stages ``dstar:<key>``, ``fit:<key>``, ``diagnose:<key>``, ``explain:<key>`` for the
    classifier in ``run``, moved to rank 0's device once (the fit runs on every rank's
    device). ``judge``: the checkpoint of the independent classifier for control (a)
    (``acc_judge``; its content is part of the diagnose key), or None. Returns its diagnosis."""
    from .data import checkpoint_data_config, content_digest, load_split, unpinned
    from .diagnose import build_dstar, diagnose_model
    from .explain import explain_run
    from .fitting import load_generators

    device = world.device
    ckpt = run / "checkpoints" / "final.pt"
    model = load_any(ckpt, device)
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
                                         cfg.dstar_images, progress),
                  clean=[fit_dir])
    diag_path = run / "diagnosis.json"

    def diagnose():
        gans = {n: g.to(device) for n, g in load_generators(fit_dir, test.shape[0]).items()}
        dstar = load_checkpoint(dpath)
        judge_net = None
        if judge is not None:  # on the model's device, checked on two D* images
            judge_net = load_any(judge, device)
            _judge_fits(judge_net, model, dstar["x"][:2].to(device), f"judge {judge}")
        doc = diagnose_model(model, gans, dstar, test.num_classes, judge=judge_net)
        classes = list(getattr(test, "classes", None) or range(test.num_classes))
        write_json(diag_path, {**doc, "classes": [str(c) for c in classes]})

    judge_key = file_digest(judge) if judge is not None else None
    st.run(f"diagnose:{key}", [dkey, fkey, judge_key], [diag_path], diagnose)
    ex_dir = run / "explain"
    st.run(f"explain:{key}", [fkey, cfg.explain_images, cfg.attack], [ex_dir / "explain.json"],
           lambda: explain_run(run, cfg.explain_images, cfg.attack, data_dir=cfg.data_dir,
                               model=load_any(ckpt, device), device=device))
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


def load_any(ckpt: Path, device: str | torch.device = "cpu") -> nn.Module:
    """A zoo classifier or a user's (``model_file`` checkpoint), on ``device``, in eval mode."""
    from .models import load_classifier, load_state_dict_strict, with_normalization

    ck = load_checkpoint(ckpt)
    if isinstance(ck, dict) and "model_file" in ck:
        net = load_model_file(ck["model_file"])
        load_state_dict_strict(net, ck["state_dict"], str(ckpt))
        if ck.get("normalize"):
            with_normalization(net, ck["normalize"])
        return net.to(device).eval()
    return load_classifier(ckpt, device=device)


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
        out[key] = {
            "generators": read_json(summary) if summary.exists() else None,
            "clean_accuracy": d["clean_accuracy"], "adversarial_accuracy": d["adversarial_accuracy"],
            "n": d["n"], "attack": d["attack"], "generator_seeds": d.get("generator_seeds", 1),
            "per_layer": {p["layer"]: {k: v for k, v in p.items() if k != "layer"} for p in d["per_layer"]},
            "maxpool_index_change": d["maxpool_index_change"],
            "misclassification": d["misclassification"], "top_targets": d["top_targets"],
            "figures": {"explanations": f"{key}/explain/explanations.png",
                        "baselines": f"{key}/explain/baselines.png"},
        }
    return out


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
