"""Every input of the main job checked before any work: layers, the user's model and the
data it takes, its layer readings, the largest batch, the judge."""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
import torch.nn as nn

from ..data.config import DataConfig
from ..data.splits import images_at, load_split, native_size
from ..interpret.config import FitConfig
from ..interpret.fit import check_fit_data, check_readings
from ..interpret.layers import LayerNameError, canonical_names, capture, default_layers, resolve
from ..models.loading import ModelFileError, load_model
from ..models.wrappers import read_output, select_output, with_normalization
from ..models.zoo import build_model, dataset_classes, dataset_shape, input_channels
from ..registry import UnknownNameError
from ..robust.config import TrainConfig
from .config import ResolvedRun, RunConfig

log = logging.getLogger(__name__)


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

    test = load_split(dataclasses.replace(tcfg.data, test_subset=2), "test")
    x, _ = images_at(test, torch.arange(len(test)))
    return build_model(tcfg.model, dataset_shape(test), dataset_classes(test)).eval(), x


def _example(data: DataConfig) -> torch.Tensor:
    """Two test images (B, C, H, W) of ``data`` (the user's model's input size)."""

    test = load_split(dataclasses.replace(data, test_subset=2), "test")
    return images_at(test, torch.arange(len(test)))[0]


def _check_layers(model: nn.Module, x: torch.Tensor | None, layers: list[str] | None,
                  what: str) -> list[str] | None:
    """Every named layer exists in ``model`` and, given an input ``x`` (B, C, H, W), is reached
    by one forward (``relu1@9`` of a module called once is not); returns the names in one
    spelling each (:func:`~interpretgan.layers.canonical_names`: ``relu1@0`` of a module
    called once is ``relu1``). Two spellings of one layer, or a name given twice, are
    refused. Each failure is one line (``ValueError``)."""

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


def _probe_user_data(net: nn.Module, cfg: RunConfig, layers: list[str] | None) -> DataConfig:
    """The data config the user's model is diagnosed on: the run's data set at
    ``cfg.image_size``, or else at the first size the model accepts of the data set's native
    size and 32. Checks, each failing in one line (``ValueError``): the model takes the
    data's channels and gives ``(B, classes)`` logits for the data set's classes (read as
    ``cfg.output`` selects, :func:`_read_logits`), the normalisation has 1 or C values per
    statistic, and every named layer is reached."""

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

    logits, used = read_output(out, selector)
    if used is not None:
        select_output(net, used, auto=selector is None)
        log.info("your model's logits: its output's %s%s", used, " (found; --output picks another)"
                 if selector is None else "")
    return logits


def _check_readings(net: nn.Module, data: DataConfig, layers: list[str] | None, fit: FitConfig) -> None:
    """Every explained layer of the user's model can be read by C (a token layer without the
    grid ``fit.tokens`` asks for fails in one line), checked on two test images."""

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


def _load_judge(judge: str | Path, judge_model_file: str | None,
                device: str | torch.device = "cpu") -> nn.Module:
    """The ``--judge`` classifier (built by ``--judge-model-file`` where it was saved from a
    model file), or one line (``ValueError``)."""
    try:
        return load_model(Path(judge), device, model_file=judge_model_file, flag="--judge-model-file")
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


def check_own_model(cfg: RunConfig, resolved: ResolvedRun, model_file: str | None,
                    checkpoint: str | None, judge_model_file: str | None,
                    device: torch.device) -> tuple[nn.Module, DataConfig, list[str] | None]:
    """Check a run on the user's model before any work: load it, find the data it takes,
    check its layers, their readings, the fit's data, the largest batch and the judge.
    Returns the model (normalisation inside), its data config and the layers, one spelling
    each (None: its default layers)."""
    if not (model_file and checkpoint):
        raise ValueError("--model-file and --checkpoint go together: give both")
    layers = list(cfg.layers) or None
    user = load_model(checkpoint, model_file=model_file)
    _check_layers(user, None, layers, "your model")
    if cfg.normalize is not None:
        with_normalization(user, cfg.normalize)
    user_data = _probe_user_data(user, cfg, layers)
    layers = _check_layers(user, _example(user_data), layers, "your model")
    _check_readings(user, user_data, layers, resolved.fit)
    check_fit_data(len(load_split(user_data, "train")), resolved.fit)
    _check_batch_size(user, user_data, largest_batch(cfg, resolved.fit, layers or default_layers(user)),
                      device)
    if cfg.judge is not None:
        _check_judge(cfg.judge, judge_model_file, user, user_data)
    return user, user_data, layers


def check_trained(cfg: RunConfig, resolved: ResolvedRun, judge_model_file: str | None) -> list[str] | None:
    """Check a run that trains its classifiers before any work: the options that only fit a
    user's model, the judge, the layers on each untrained classifier and the fit's data.
    Returns the layers, one spelling each (None: the default layers)."""
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
    layers = list(cfg.layers) or None
    for tcfg in _trained_configs(resolved).values():
        net, x = _untrained(tcfg)
        layers = _check_layers(net, x, layers, f"the {tcfg.model.name} classifier")
        check_fit_data(len(load_split(dataclasses.replace(tcfg.data, train_subset=None), "train")),
                       resolved.fit)
    return layers
