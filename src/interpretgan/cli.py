"""The ``interpretgan`` command: a thin layer mapping options onto the library."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from . import __version__
from .data.config import DataError
from .data.splits import load_dataset
from .interpret.config import FIT_PRESETS
from .interpret.explain import explain_run
from .interpret.gan import TokenLayoutError, parse_tokens, read_layer
from .interpret.layers import default_layers, layer_shapes, list_layers
from .models.loading import CheckpointMismatchError, model_and_example
from .models.zoo import POOLS, list_models
from .registry import UnknownNameError
from .report.html import write_study_report
from .robust.config import TRAIN_PRESETS, train_preset_for
from .robust.evaluate import default_out, evaluate_checkpoint
from .robust.methods import TRAIN_METHODS
from .robust.study import STUDY_PRESETS, run_pooling_study
from .robust.training import train_classifier
from .run.config import RUN_PRESETS, RunConfig, resolve_run, run_preset_for
from .run.fit_job import fit_run
from .run.pipeline import run_main
from .run.results import rebuild_report
from .run.stages import refuse_inside_main_run
from .runtime import distributed
from .runtime.devices import resolve_device
from .runtime.runs import check_free, read_json, to_json
from .runtime.tensorboard import TensorBoardMissingError
from .settings import MAX_GENERATOR_SEEDS, merge, override, parse_assignments, validate

log = logging.getLogger("interpretgan")


def _csv(s: str) -> list[str]:
    return [p.strip() for p in s.split(",") if p.strip()]


def _layers(s: str | None) -> list[str] | None:
    """``--layers``: None (not given) or "default" → the model's default layers; an empty
    list is an error, not a silent default."""
    if s is None or s == "default":
        return None
    names = _csv(s)
    if not names:
        raise ValueError("--layers is empty: name at least one layer (`interpretgan layers` "
                         "lists them), or leave it out for the default ones")
    return names


def _tokens(s: str) -> str:
    """``--tokens``: auto, flat or grid:K (checked by argparse: one line, exit status 2)."""

    try:
        parse_tokens(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return s


def _floats(s: str | None, option: str) -> tuple[float, ...] | None:
    """``"0.5,0.25"`` → ``(0.5, 0.25)``; None stays None; anything else is a one-line error."""
    if s is None:
        return None
    try:
        return tuple(float(p) for p in _csv(s))
    except ValueError:
        raise ValueError(f"{option} takes comma-separated numbers, got {s!r}") from None


# --------------------------------------------------------------------------- commands
def _check_out(out: Path, option: str) -> None:
    """Before any work: ``out`` is in no folder another process holds, and inside no main
    job's run folder (whose stages own it); else one line naming ``option``."""

    check_free(out)
    refuse_inside_main_run(out, option)


def cmd_data(a) -> int:
    for split in ("train", "test"):
        kw = {"data_dir": a.data_dir, "cache_dir": a.cache_dir}
        if a.dataset in ("mnist", "fashion-mnist"):
            kw["size"] = a.image_size
        ds = load_dataset(a.dataset, split, **kw)
        print(f"{a.dataset} {split}: {len(ds)} images of shape {tuple(ds.shape)}, "
              f"{ds.num_classes} classes")
    return 0


def cmd_models(a) -> int:
    print("\n".join(list_models()))
    return 0


def _model_from_args(a):
    return model_and_example(a.checkpoint, a.model, a.model_file, a.input_size, a.pool,
                             getattr(a, "channels", None))


def cmd_layers(a) -> int:
    net, example = _model_from_args(a)
    names = list_layers(net, example)
    shapes = layer_shapes(net, example, names)
    defaults = set(default_layers(net))
    width = max(len(n) for n in names)
    for n in names:
        mark = "*" if n in defaults else " "
        print(f"{mark} {n:<{width}}  {str(tuple(shapes[n])):<18}  {_reading(shapes[n], a.tokens)}")
    print(f"(* = explained by default; the last column: how the generators read it with fit.tokens={a.tokens})")
    return 0


def _reading(shape: tuple, tokens: str) -> str:
    """What a generator's C reads a layer output of ``shape`` as (a token layer without the
    grid ``tokens`` asks for: the settings that read it)."""

    try:
        return read_layer(shape, tokens).describe().rsplit(" (", 1)[0]
    except TokenLayoutError:
        return "tokens without a square grid: set fit.tokens=flat or grid:K"


def _train_config(a):
    base = TRAIN_PRESETS.get(a.preset) if a.preset else train_preset_for(a.dataset, a.method)
    over = {
        "method": a.method if a.preset is None else None, "epochs": a.epochs,
        "batch_size": a.batch_size, "lr": a.lr, "seed": a.seed, "step_size": a.step_size,
        "eval_attack": a.eval_attack,
        "data.data_dir": a.data_dir, "data.train_subset": a.train_subset,
        "data.test_subset": a.test_subset, "data.image_size": a.image_size,
        "model.name": a.model, "model.pool": a.pool,
        "data.verify": False if a.no_verify else None,
        "checkpoint_every": a.checkpoint_every, "checkpoint_every_s": a.checkpoint_every_s,
    }
    if a.preset is None:
        over["data.dataset"] = a.dataset
    return override(base, **over)


def cmd_train(a) -> int:
    cfg = validate(_train_config(a))
    run_dir = a.run_dir or Path("runs") / (f"{cfg.data.dataset}-{cfg.model.name}-{cfg.model.pool}-"
                                           f"{cfg.method}-s{cfg.seed}")
    if a.dry_run:
        print(to_json(dataclasses.asdict(cfg)))
        print(f"run directory: {run_dir}")
        return 0
    if a.world.main:  # before rank 0 locks the folder
        _check_out(run_dir, "--run-dir")
    metrics = train_classifier(cfg, run_dir, resume=not a.no_resume, progress=not a.quiet,
                               device=a.world.device, world=a.world,
                               log_dir=_board(a, Path(run_dir), "train"))
    if a.world.main:
        print(to_json(metrics))
    return 0


def cmd_evaluate(a) -> int:
    check_free(Path(a.out) if a.out else default_out(Path(a.checkpoint)))  # not into a busy run

    kw = {}
    if a.image_size:
        kw["input_size"] = a.image_size
    rows = evaluate_checkpoint(a.checkpoint, _csv(a.attacks) if a.attacks else [], a.out,
                               dataset=a.dataset, model=a.model, data_dir=a.data_dir,
                               subset=a.subset, batch_size=a.batch_size, seed=a.seed,
                               progress=not a.quiet, device=a.device, model_file=a.model_file, **kw)
    for r in rows:
        print(f"{r['attack']:>10}: {100 * r['accuracy']:.2f}%  (n={r['n']}, {r['seconds']:.1f}s)")
    return 0


def cmd_study(a) -> int:
    cfg = STUDY_PRESETS.get(a.dataset)
    sets = parse_assignments(a.set)
    train_over = {k[len("train."):]: v for k, v in sets.items() if k.startswith("train.")}
    top = {k: v for k, v in sets.items() if not k.startswith("train.")}
    if a.epochs is not None:
        train_over["epochs"] = a.epochs
    cfg = merge(cfg, top)
    cfg = override(cfg, data_dir=a.data_dir, test_subset=a.test_subset,
                   seeds=tuple(range(a.seeds)) if a.seeds is not None else None,
                   models=tuple(_csv(a.models)) if a.models else None,
                   attacks=tuple(_csv(a.attacks)) if a.attacks else None,
                   autoattack=True if a.autoattack else None,
                   verify=False if a.no_verify else None,
                   train_overrides={**cfg.train_overrides, **train_over} or None)
    if a.full_test:
        cfg = dataclasses.replace(cfg, test_subset=None)
    validate(cfg)  # every setting, training ones included, before any work
    root = Path(a.run_dir or f"runs/study-pooling-{cfg.dataset}")
    if a.dry_run:
        resolve_device(a.device)  # the device must exist
        print(to_json(dataclasses.asdict(cfg)))
        return 0
    doc = run_pooling_study(cfg, root, progress=not a.quiet, device=a.device)
    paths = write_study_report(doc, root)
    print(paths["markdown"].read_text())
    print(f"chart: {paths['chart']}")
    return 0


def cmd_report(a) -> int:
    """Rebuild a report from saved artifacts (never retrains)."""

    if a.kind == "study":

        paths = write_study_report(read_json(Path(a.dir) / "study.json"), a.dir)
        print(paths["markdown"].read_text())
    else:

        rebuild_report(a.dir)
        print(f"report: {Path(a.dir) / 'report' / 'index.html'}")
    return 0


def _generator_seeds_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--generator-seeds", type=int, metavar="K",
                   help="fit K generators per layer (seeds 0 … K-1, together in one loop); the "
                        "diagnosis averages them and reports each seed's Acc_i (acc_seeds)")


def _seed_range(k: int | None) -> tuple[int, ...] | None:
    """``--generator-seeds K`` → (0, …, K − 1); K < 1 is left to the config check, a K above
    its bound stops here (before a list of K seeds is made)."""

    if k is not None and k > MAX_GENERATOR_SEEDS:
        raise ValueError(f"--generator-seeds takes at most {MAX_GENERATOR_SEEDS} seeds, got {k}")
    return None if k is None else tuple(range(k))


def cmd_fit(a) -> int:
    cfg = validate(merge(override(FIT_PRESETS.get(a.preset), seed=a.seed, train_subset=a.train_subset,
                                  generator_seeds=_seed_range(a.generator_seeds)),
                         parse_assignments(a.set)))
    layers = _layers(a.layers)
    run_dir = Path(a.run_dir or Path(a.checkpoint).resolve().parent.parent)
    if a.dry_run:
        print(to_json({"fit": dataclasses.asdict(cfg), "layers": layers or "default",
                       "run_dir": str(run_dir)}))
        return 0
    if a.world.main:  # before rank 0 locks the folder
        _check_out(run_dir / "fit", "--run-dir")
    summary = fit_run(a.checkpoint, run_dir, cfg, layers, a.data_dir, progress=not a.quiet,
                      device=a.world.device, image_size=a.image_size, world=a.world,
                      model_file=a.model_file, log_dir=_board(a, run_dir, "fit"))
    if summary is None:  # a rank other than 0: rank 0 reports
        return 0
    for n, r in summary["layers"].items():
        flag = "" if r.get("reliable", True) else f"   below the floor {summary['agreement_floor']:.2f}: unreliable"
        print(f"{n:<28} agreement {100 * r['agreement']:6.2f}%   KID {r['kid']:.4f}{flag}")
    print(f"real-vs-real KID {summary['kid_real_vs_real']:.4f}; fit took {summary['fit_seconds']:.0f}s")
    return 0


def cmd_explain(a) -> int:
    _check_out(Path(a.out or Path(a.run) / "explain"), "--out")
    doc = explain_run(a.run, a.images, a.attack, a.out, a.data_dir, a.seed, device=a.device,
                      image_size=a.image_size, model_file=a.model_file)
    print(f"explanations: {doc['figures']['explanations']}\nbaselines:    {doc['figures']['baselines']}")
    return 0


def cmd_run(a) -> int:
    """The main job: two classifiers, D*, generators, diagnosis and report (see pipeline)."""

    preset = a.preset or run_preset_for(a.dataset or RunConfig.dataset)
    cfg = override(RUN_PRESETS.get(preset), data_dir=a.data_dir, dataset=a.dataset,
                   layers=tuple(_layers(a.layers) or ()) or None,
                   dstar_images=a.dstar_images, seed=a.seed, image_size=a.image_size,
                   normalize=_floats(a.normalize, "--normalize"),
                   verify=False if a.no_verify else None, judge=a.judge, output=a.output)
    sets = parse_assignments(a.set)
    if a.generator_seeds is not None:
        sets = {"fit.generator_seeds": _seed_range(a.generator_seeds), **sets}
    groups = {"fit.": "fit_overrides", "train.": "train_overrides"}
    top = {k: v for k, v in sets.items() if not k.startswith(tuple(groups))}
    for prefix, field in groups.items():
        sub = {k[len(prefix):]: v for k, v in sets.items() if k.startswith(prefix)}
        if sub:
            top[field] = {**getattr(cfg, field), **sub}
    cfg = merge(cfg, top)
    # every setting (training and fit ones too) before any work
    resolve_run(cfg, own_model=bool(a.model_file or a.checkpoint))
    if a.dry_run:
        print(to_json(dataclasses.asdict(cfg)))
        return 0
    res = run_main(cfg, a.run_dir, a.model_file, a.checkpoint, progress=not a.quiet,
                   device=a.world.device, world=a.world, judge_model_file=a.judge_model_file,
                   verify_outputs=a.verify_outputs, tensorboard=a.tensorboard)
    if res is None:  # a rank other than 0: rank 0 reports
        return 0
    for key in ("natural", "adversarially_trained", "user"):
        if key in res:
            r = res[key]
            accs = " ".join(f"{100 * r['per_layer'][n]['acc']:.1f}" for n in res["layers"])
            print(f"{key:>22}: clean {100 * r['clean_accuracy']:.2f}%  {r['attack']} "
                  f"{100 * r['adversarial_accuracy']:.2f}%  Acc_i {accs}")
    print(f"report: {Path(a.run_dir) / 'report' / 'index.html'}  ({res['wall_time_s']:.0f}s)")
    return 0


def _board(a, out: Path, part: str) -> Path | None:
    """``--tensorboard`` of ``train``/``fit``: the events' folder, ``OUT/tensorboard/<part>``."""
    return out / "tensorboard" / part if a.tensorboard else None


# --------------------------------------------------------------------------- parser
def _tensorboard_option(p: argparse.ArgumentParser, where: str) -> None:
    p.add_argument("--tensorboard", action="store_true",
                   help=f"write TensorBoard events to {where} (needs the tensorboard package; "
                        "look at them with tensorboard --logdir FOLDER)")


def _device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu, cuda[:N]")


def _devices_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", type=int, default=1, metavar="N",
                   help="N processes on this machine: one per GPU (nccl), or CPU processes with "
                        "gloo when --device cpu or there is no GPU (for several machines: torchrun "
                        "… -m interpretgan, see docs/distributed.md)")


def _model_file_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-file", metavar="FILE.py:FUNCTION",
                   help="the code that builds the classifier, for a checkpoint saved from (or "
                        "for) your own model: a checkpoint never chooses the code that runs")


def _data_parser(sub) -> None:
    p = sub.add_parser("data", help="fetch, verify and describe a dataset")
    p.add_argument("action", choices=["fetch", "info"])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--data-dir")
    p.add_argument("--cache-dir")
    p.add_argument("--image-size", type=int, default=32)
    p.set_defaults(fn=cmd_data)


def _models_parser(sub) -> None:
    p = sub.add_parser("models", help="list the model zoo")
    p.set_defaults(fn=cmd_models)


def _layers_parser(sub) -> None:
    p = sub.add_parser("layers", help="list a model's nameable layers with output shapes")
    p.add_argument("--model", default="smallcnn")
    p.add_argument("--pool", default="max", choices=POOLS)
    p.add_argument("--input-size", type=int)
    p.add_argument("--checkpoint")
    _model_file_option(p)
    p.add_argument("--channels", type=int, help="input channels of --model-file (default: its first Conv2d's)")
    p.add_argument("--tokens", default="auto", type=_tokens,
                   help="how a (N, D) token layer is read: auto, flat or grid:K (fit.tokens)")
    p.set_defaults(fn=cmd_layers)


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a classifier (natural or adversarial)")
    p.add_argument("--preset", help="a named training preset (overrides --dataset/--method)")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--method", default="natural", choices=TRAIN_METHODS.names())
    p.add_argument("--model")
    p.add_argument("--pool", choices=POOLS)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--step-size", type=float, help="attack step (ATTA: per epoch)")
    p.add_argument("--eval-attack", help="attack for per-epoch robust accuracy, e.g. pgd-40")
    p.add_argument("--seed", type=int)
    p.add_argument("--image-size", type=int)
    p.add_argument("--train-subset", type=int)
    p.add_argument("--test-subset", type=int)
    p.add_argument("--data-dir")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the dataset checksums (a deliberately modified CIFAR-10 copy)")
    p.add_argument("--run-dir")
    _device_option(p)
    _devices_option(p)
    p.add_argument("--checkpoint-every", type=int, metavar="N",
                   help="a resume point every N batches inside an epoch (default: off)")
    p.add_argument("--checkpoint-every-s", type=float, metavar="S",
                   help="a resume point every S seconds inside an epoch (default 120; 0: off)")
    p.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    _tensorboard_option(p, "RUN_DIR/tensorboard/train: every epoch's metrics row, as train/<field>")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and stop")
    p.set_defaults(fn=cmd_train)


def _evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="clean and robust accuracy of a checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--attacks", default="", help="comma list: pgd-40,pgd-100,mpgd-40,fgsm")
    p.add_argument("--model", help="architecture, for a bare state_dict (p.g. TRADES')")
    p.add_argument("--image-size", type=int, help="input size, for a bare state_dict")
    _model_file_option(p)
    p.add_argument("--dataset")
    p.add_argument("--data-dir")
    p.add_argument("--subset", type=int, help="evaluate on the first N test images")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (default: the checkpoint's run folder)")
    _device_option(p)
    p.set_defaults(fn=cmd_evaluate)


def _fit_parser(sub) -> None:
    p = sub.add_parser("fit", help="fit InterpretGAN explanation generators for a classifier")
    p.add_argument("--checkpoint", required=True)
    _model_file_option(p)
    p.add_argument("--layers", default="default", help="default, or a comma list of module paths")
    p.add_argument("--preset", default="quick", choices=FIT_PRESETS.names())
    p.add_argument("--seed", type=int)
    _generator_seeds_option(p)
    p.add_argument("--train-subset", type=int)
    p.add_argument("--data-dir")
    p.add_argument("--image-size", type=int, help="the classifier's input side (default: its checkpoint's)")
    p.add_argument("--run-dir", help="default: the classifier's run folder")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="change one FitConfig field, e.g. --set batch_size=32 (repeatable)")
    _device_option(p)
    _devices_option(p)
    _tensorboard_option(p, "RUN_DIR/tensorboard/fit: each generator's losses and running "
                           "agreement, its explanations at the end of every scale")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(fn=cmd_fit)


def _explain_parser(sub) -> None:
    p = sub.add_parser("explain", help="explanation grids (natural + adversarial) and baselines")
    p.add_argument("--run", required=True, help="run folder with checkpoints/final.pt and fit/")
    _model_file_option(p)
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--attack", default="pgd-40")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out")
    p.add_argument("--data-dir")
    p.add_argument("--image-size", type=int, help="the classifier's input side (default: its checkpoint's)")
    _device_option(p)
    p.set_defaults(fn=cmd_explain)


def _study_parser(sub) -> None:
    p = sub.add_parser("study", help="robustness studies")
    p.add_argument("kind", choices=["pooling"])
    p.add_argument("--dataset", default="mnist", choices=STUDY_PRESETS.names())
    p.add_argument("--seeds", type=int, help="number of seeds (0, 1, …)")
    p.add_argument("--models", help="comma list (default: the paper's for the dataset)")
    p.add_argument("--attacks", help="comma list (default: the paper's columns)")
    p.add_argument("--epochs", type=int, help="training epochs per model")
    p.add_argument("--test-subset", type=int, help="evaluate on N test images")
    p.add_argument("--full-test", action="store_true", help="evaluate on the whole test set")
    p.add_argument("--autoattack", action="store_true", help="add an APGD-CE + APGD-T column")
    p.add_argument("--data-dir")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the dataset checksums (a deliberately modified CIFAR-10 copy)")
    p.add_argument("--run-dir")
    _device_option(p)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="change a StudyConfig field, or a training field with train.KEY, e.g. "
                        "--set train.batch_size=64 --set 'model_kwargs={\"vgg16\": {\"hidden\": 64}}'")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(fn=cmd_study)


def _report_parser(sub) -> None:
    p = sub.add_parser("report", help="rebuild a report from saved artifacts")
    p.add_argument("kind", choices=["study", "run"], help="study: a pooling study; run: the main job")
    p.add_argument("--dir", required=True)
    p.set_defaults(fn=cmd_report)


def _run_parser(sub) -> None:
    p = sub.add_parser("run", help="the main job: train, attack, fit, diagnose, report")
    p.add_argument("--preset", choices=RUN_PRESETS.names(),
                   help="quick, paper (MNIST), celeba (about an hour on one GPU), celeba-paper "
                        "(the paper's CelebFaces schedule); default: the one made for --dataset, "
                        "else quick")
    p.add_argument("--run-dir", default="runs/main")
    p.add_argument("--dataset")
    p.add_argument("--data-dir")
    p.add_argument("--layers", help="default, or a comma list of module paths")
    p.add_argument("--model-file", help="your classifier: FILE.py:FUNCTION returning an nn.Module")
    p.add_argument("--checkpoint", help="its state_dict (with --model-file)")
    p.add_argument("--image-size", type=int,
                   help="input side in pixels (default: the size your model accepts of the data "
                        "set's native one and 32; 32 for the trained classifiers)")
    p.add_argument("--normalize", metavar="MEAN,STD",
                   help="your model expects (x - mean) / std: MEAN,STD for every channel or "
                        "M1,M2,M3,S1,S2,S3 per channel; the tool still feeds it [0, 1] images")
    p.add_argument("--output", metavar="SELECTOR",
                   help="where your model's forward keeps the logits: INDEX of a tuple (0 or [0]), "
                        "a KEY of a dict or an ATTRIBUTE (logits); default: the output itself, a "
                        "tuple's first element or 'logits' (the report says which)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the dataset checksums (a deliberately modified CIFAR-10 copy)")
    p.add_argument("--judge", metavar="CHECKPOINT",
                   help="an independent classifier (zoo or interpretgan checkpoint, same input "
                        "size) that judges your model's explanations (acc_judge)")
    p.add_argument("--judge-model-file", metavar="FILE.py:FUNCTION",
                   help="the code that builds the --judge classifier, where it was saved from a "
                        "model file (a checkpoint never chooses the code that runs)")
    p.add_argument("--dstar-images", type=int, help="test images in the adversarial set D*")
    p.add_argument("--seed", type=int)
    _generator_seeds_option(p)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="change a RunConfig field; fit.KEY / train.KEY change the fit / training "
                        "presets, e.g. --set fit.batch_size=32 --set train.epochs=2 (repeatable)")
    _device_option(p)
    _devices_option(p)
    p.add_argument("--verify-outputs", action="store_true",
                   help="check every cached stage's files by content (SHA-256), not only by size "
                        "and modification time")
    _tensorboard_option(p, "RUN_DIR/tensorboard/<model>/train and …/fit as the training and "
                           "fitting stages run (no stage's input: a stage served from the cache "
                           "writes no events)")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(fn=cmd_run)


def build_parser() -> argparse.ArgumentParser:
    """The command line: one sub-parser per command, its choices read from the registries."""
    p = argparse.ArgumentParser(prog="interpretgan", description=__doc__)
    p.add_argument("--version", action="version", version=__version__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_data_parser, _models_parser, _layers_parser, _train_parser, _evaluate_parser,
                _fit_parser, _explain_parser, _study_parser, _report_parser, _run_parser):
        add(sub)
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM (what SLURM and Kubernetes send before they stop a job), raised where the
    process is, like Ctrl-C: run folders are unlocked and keep their resume points."""


def _terminate(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM cannot cut the cleanup short
    raise Terminated


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM raises :class:`Terminated` while the command runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def main(argv: list[str] | None = None) -> int:
    """Run one command. A user error (a bad setting, a missing or refused file, a locked or
    unwritable run folder, a full disk, a non-finite result) logs one line and returns 2
    (``-v`` adds the traceback); Ctrl-C returns 130 and SIGTERM 143, and the command resumes
    when run again."""
    a = build_parser().parse_args(argv)
    rank = os.environ.get("RANK") if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    level = logging.DEBUG if a.verbose else logging.INFO
    if rank not in (None, "0") and not a.verbose:  # rank 0 speaks for the job
        level = logging.WARNING
    logging.basicConfig(level=level, datefmt="%H:%M:%S",
                        format="%(asctime)s %(levelname)s " + (f"[rank {rank}] " if rank else "")
                        + "%(name)s: %(message)s")
    if rank not in (None, "0"):
        a.quiet = True  # one progress bar: rank 0's

    try:
        with _sigterm_interrupts():
            if getattr(a, "devices", None) is None:
                return a.fn(a)
            return _distributed(a, argv)
    except Terminated:
        log.debug("terminated", exc_info=True)
        log.error("terminated (SIGTERM); rerun the same command to resume")
        return 143
    except KeyboardInterrupt:
        log.debug("interrupted", exc_info=True)
        log.error("interrupted; rerun the same command to resume")
        return 130
    except (DataError, CheckpointMismatchError, UnknownNameError, ValueError, OSError,
            TensorBoardMissingError) as e:
        # ValueError covers ConfigError, UnsafeCheckpointError, RunLockedError, NonFiniteError;
        # OSError a missing file, a read-only or full disk
        log.debug("error", exc_info=True)
        log.error("%s", _one_line(e))
        return 2


def _distributed(a, argv: list[str] | None) -> int:
    """A command that can run on several ranks: ``--devices N`` starts N local ranks
    (each runs this same command line); a launched rank (``--devices`` or torchrun) joins
    its job; one process runs alone. Every rank gets ``a.world``."""

    if a.devices < 1:
        raise ValueError(f"--devices takes a number of processes ≥ 1, got {a.devices}")
    if a.dry_run:  # prints the resolved config: no processes, but the device must exist
        return _with_world(a, distributed.World(device=distributed.check_devices(a.devices, a.device)))
    if a.devices > 1 and not distributed.launched():
        distributed.check_devices(a.devices, a.device)
        log.info("starting %d ranks on this machine", a.devices)
        try:
            distributed.spawn(a.devices, _rank_main, sys.argv[1:] if argv is None else argv)
        except distributed.PeerLostError as e:
            log.error("%s", e)
            return distributed.EXIT_PEER_LOST
        return 0
    if distributed.launched() and a.devices not in (1, int(os.environ["WORLD_SIZE"])):
        log.warning("--devices %d ignored: this process is one of the %s ranks its launcher "
                    "started", a.devices, os.environ["WORLD_SIZE"])
    try:
        with distributed.process_group(a.device) as world:
            return _with_world(a, world)
    except distributed.dist.DistError as e:  # a collective broke: a peer went away
        log.debug("collective", exc_info=True)
        log.error("rank %s: %s; rerun the same command to resume", os.environ.get("RANK"),
                  distributed.one_line(e))
        return distributed.EXIT_PEER_LOST


def _with_world(a, world) -> int:
    a.world = world
    return a.fn(a)


def _rank_main(argv: list[str]) -> int:
    """One rank started by ``--devices``: the same command, joined to its job."""
    return main(argv)


# What to do about an OSError a user can fix (a full disk, a quota, a read-only mount).
_OS_ADVICE = {
    errno.ENOSPC: "free some space and rerun the same command: it resumes, finished work is kept",
    errno.EDQUOT: "free some space or raise the quota, and rerun the same command: it resumes",
    errno.EROFS: "make it writable, or give a --run-dir (or --out) on a writable disk",
}


def _one_line(e: BaseException) -> str:
    """An exception's message on one line (an OSError without text gets its type and errno;
    a full disk, a quota or a read-only mount says what to do)."""
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, OSError) and not isinstance(e, FileNotFoundError) and e.filename:
        text = f"{e.strerror or type(e).__name__}: {e.filename}"
        if e.errno in _OS_ADVICE:
            text += f"; {_OS_ADVICE[e.errno]}"
    return text


if __name__ == "__main__":
    sys.exit(main())
