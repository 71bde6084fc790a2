"""The explainer object: InterpretGAN for one classifier and any number of its layers, in
memory, the library's one-call face (as Captum's ``LayerX(model, layer).attribute(x)``)::

    ex = Explainer(model, ["conv1", "fc1"], preset="quick", device="cuda")
    ex.fit(images)                   # one generator per layer (and generator seed)
    ex.explain(x)                    # {layer: x̂ (B, C, H, W)}, x̂ = G(C(f_pre(x))) (Eq. 5)
    ex.labels(x), ex.agreement(x)    # f's labels of the explanations; share with f(x̂) = f(x)
    ex.save("dir"); Explainer.load("dir", model)

It runs the same fit (:func:`~.fit.fit_generators`) and the same explain-then-classify loop
(:mod:`.explaining`) as ``interpretgan run``; a saved explainer is a fit folder, so the
``fit/`` folder of a run loads as one too.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from .config import FIT_PRESETS, FitConfig, fit_for_image_size
from .explaining import explain_batch, label_explanations
from .fit import check_fit_data, check_readings, fit_generators, load_generators
from .layers import canonical_names, default_layers, resolve
from .members import layer_dirname, member_key, members_by_layer
from ..data.splits import as_image_dataset, check_images, images_at, take
from ..data.sources import subset_indices
from ..models.wrappers import read_output
from ..runtime.devices import eval_mode, resolve_device
from ..runtime.runs import RunLock, read_json, save_checkpoint, sweep_temp, write_json
from ..settings import from_dict, merge, validate

log = logging.getLogger(__name__)

EXPLAINER_FILE = "explainer.json"  # what a fit folder needs beyond the fit's own files to load


class Explainer:
    """One generator per layer of ``model`` and generator seed (Section 3 of the paper).

    ``model``: a classifier taking (B, C, H, W) images in [0, 1] and returning logits (B,
    classes) (a model returning more: wrap it with :func:`~interpretgan.models.select_output`);
    it is moved to ``device`` and frozen by :meth:`fit`. ``layers``: module paths
    (``"features.3"``, ``"relu1@0"``, ``"blocks.1[0]"``: :mod:`.layers`); None: the model's
    default layers. ``preset``: a fit preset's name (``quick``, ``paper``, …) or a
    :class:`~.config.FitConfig`; ``settings``: its fields to change (``lam=0.3``,
    ``steps_per_scale=(30, 30, 60, 360)``), checked as ``--set fit.…`` is. ``seeds``: the
    generator seeds fitted per layer. ``log_dir``: TensorBoard events of the fit.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] | None = None, preset: str | FitConfig = "quick",
                 device: str | torch.device = "auto", seeds: Sequence[int] | int | None = None,
                 log_dir: str | Path | None = None, **settings):
        self.device = resolve_device(device)  # a missing device fails here, never falls back
        cfg = preset if isinstance(preset, FitConfig) else FIT_PRESETS.get(preset)
        if isinstance(layers, str):  # one layer's name
            layers = [layers]
        if seeds is not None:
            if "generator_seeds" in settings:
                raise ValueError("give the generator seeds once: seeds= or generator_seeds=, not both")
            # an int K: seeds 0 … K − 1, as ``--generator-seeds K``
            settings["generator_seeds"] = tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)
        self.cfg = validate(merge(cfg, settings), "fit.")
        self.model = model.to(self.device)
        self.layers = list(layers or self.cfg.layers or default_layers(model))
        for name in self.layers:  # an unknown name: one line, before any work
            resolve(model, name)
        self.log_dir = log_dir
        self.gans: dict[str, nn.Module] = {}
        self.image_channels: int | None = None  # of the images fitted on
        self.image_size: int | None = None
        self.folder: Path | None = None

    # ---------------------------------------------------------------- fitting
    def fit(self, images, eval_images=None, folder: str | Path | None = None,
            progress: bool = True) -> "Explainer":
        """Fit the generators on ``images`` (a tensor (N, C, H, W) in [0, 1], a Dataset of
        ``(x, y)`` or of images, or a DataLoader), cut to the preset's ``train_subset``.

        ``eval_images``: held-out images (same kinds) for the running agreement and the
        agreement floor; None: the preset's ``eval_images`` (at most a fifth of ``images``)
        are held out of ``images`` by a seeded draw. ``folder``: where the fit is saved as it
        goes; a fit killed there resumes from its last checkpoint when called again (None: a
        temporary folder). Returns the explainer."""
        train, eval_x = self._data(images, eval_images)
        example = eval_x[:2].to(self.device)
        self._check_model(example)
        self.layers = canonical_names(self.model, example, self.layers)
        self.cfg = dataclasses.replace(self.cfg, layers=tuple(self.layers))
        check_readings(self.model, example, self.layers, self.cfg)
        with _fit_folder(folder) as out:
            fit_generators(self.model, train, eval_x, self.cfg, out, self.layers, progress=progress,
                           log_dir=self.log_dir)
            self.image_channels, self.image_size = eval_x.shape[1], eval_x.shape[-1]
            write_json(out / EXPLAINER_FILE, {"image_channels": self.image_channels,
                                               "image_size": self.image_size})
            self.gans = load_generators(out, self.image_channels, self.device)
        self.folder = Path(folder) if folder is not None else None
        return self

    def _data(self, images, eval_images) -> tuple:
        """The fit's training set and held-out images (N, C, H, W) on the CPU."""
        train = as_image_dataset(images)
        if eval_images is None:  # held out of the images, by a draw seeded with cfg.seed
            order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.cfg.seed))
            k = max(2, min(self.cfg.eval_images, len(train) // 5))
            eval_set, train = take(train, order[:k]), take(train, order[k:])
        else:
            eval_set = as_image_dataset(eval_images)
        eval_x, _ = images_at(eval_set, torch.arange(len(eval_set)))
        if self.cfg.train_subset is not None and self.cfg.train_subset < len(train):
            train = take(train, subset_indices(len(train), self.cfg.train_subset, self.cfg.seed))
        check_fit_data(len(train), self.cfg)
        return train, eval_x

    def _check_model(self, example: torch.Tensor) -> None:
        """The model returns logits (B, classes) for ``example``; else one line."""
        with torch.no_grad(), eval_mode(self.model):
            try:
                out = self.model(example)
            except RuntimeError as e:  # a shape mismatch deep in the model: say what was given
                raise ValueError(f"the model cannot take images of shape {tuple(example.shape[1:])} (C, H, W): "
                                 f"{str(e).splitlines()[0]}") from e
        if not isinstance(out, torch.Tensor):
            _, found = read_output(out)  # raises where nothing looks like logits
            raise ValueError(f"the model's forward returns {type(out).__name__}, not logits: wrap it "
                             f"with interpretgan.models.select_output(model, {found!r})")

    # ---------------------------------------------------------------- explaining
    def _member(self, seed: int | None) -> dict[str, nn.Module]:
        """One generator per layer: generator seed ``seed`` (None: the first fitted)."""
        if not self.gans:
            raise RuntimeError("this explainer has no generators yet: call fit() or Explainer.load()")
        groups = members_by_layer(list(self.gans))
        if seed is None:
            return {layer: self.gans[keys[0]] for layer, keys in groups.items()}
        missing = [layer for layer in groups if member_key(layer, seed) not in self.gans]
        if missing:
            raise KeyError(f"generator seed {seed} was not fitted (seeds: {list(self.cfg.generator_seeds)})")
        return {layer: self.gans[member_key(layer, seed)] for layer in groups}

    @torch.no_grad()
    def explain(self, x: torch.Tensor, seed: int | None = None, batch_size: int = 250) -> dict[str, torch.Tensor]:
        """``{layer: x̂ (B, C, H, W)}`` for images ``x`` (B, C, H, W) in [0, 1]: each layer's
        explanation G(C(f_pre(x))) by generator seed ``seed`` (None: the first fitted), on
        ``x``'s device."""
        gans = self._member(seed)
        self._check_x(x)
        parts: dict[str, list[torch.Tensor]] = {n: [] for n in gans}
        for s in range(0, len(x), batch_size):
            for n, xh in explain_batch(self.model, gans, x[s: s + batch_size].to(self.device)).items():
                parts[n].append(xh.float().to(x.device))
        return {n: torch.cat(v) if v else x[:0].float() for n, v in parts.items()}

    def labels(self, x: torch.Tensor, seed: int | None = None) -> dict[str, torch.Tensor]:
        """``{layer: (B,)}``: f's label of each explanation of ``x`` (B, C, H, W) by
        generator seed ``seed`` (None: the first fitted), int64 on the CPU."""
        gans = self._member(seed)
        self._check_x(x)
        return label_explanations(self.model, gans, x)[0]

    def agreement(self, x: torch.Tensor) -> dict[str, float]:
        """``{layer: share of x with f(x̂) = f(x)}``, the mean over the generator seeds."""
        self._member(None)  # no generators yet: one line
        self._check_x(x)
        by_f, _, fx = label_explanations(self.model, self.gans, x)
        return {layer: sum((by_f[k] == fx).double().mean().item() for k in keys) / len(keys)
                for layer, keys in members_by_layer(list(by_f)).items()}

    def _check_x(self, x: torch.Tensor) -> None:
        """One line unless ``x`` is float (B, C, H, W) in [0, 1] of the fitted channels and size."""
        check_images(x, self.image_channels, self.image_size)
        if not x.is_floating_point():
            raise ValueError(f"images must be float in [0, 1], got {x.dtype} (divide uint8 images by 255)")

    # ---------------------------------------------------------------- saving
    def save(self, folder: str | Path) -> Path:
        """Write the generators to ``folder`` (a fit folder: ``config.json``, one
        ``<member>/last.pt`` each, ``explainer.json``); the folder :meth:`fit` wrote to is
        one already."""
        out = Path(folder)
        if self.folder is not None and out.resolve() == self.folder.resolve():
            return out
        self._member(None)  # nothing fitted: one line
        keys = list(self.gans)
        sized = fit_for_image_size(self.cfg, self.image_size) if self.image_size else self.cfg
        with RunLock(_made(out)):
            write_json(out / "config.json", {
                "fit": dataclasses.asdict(sized), "layers": self.layers, "members": keys,
                "shapes": {n: list(self.gans[member_key(n, self.cfg.generator_seeds[0])].shapes[0])
                           for n in self.layers}})
            for k, g in self.gans.items():
                save_checkpoint(out / layer_dirname(k) / "last.pt", {"shape": list(g.shapes[0]),
                                                                     "state": g.state_dict()})
            write_json(out / EXPLAINER_FILE, {"image_channels": self.image_channels,
                                               "image_size": self.image_size})
        return out

    @classmethod
    def load(cls, folder: str | Path, model: nn.Module, device: str | torch.device = "auto",
             image_channels: int | None = None) -> "Explainer":
        """The explainer saved in ``folder`` (:meth:`save`, :meth:`fit`'s folder, or a run's
        ``<model>/fit``) for ``model``, on ``device``. ``image_channels``: for a fit folder
        written without ``explainer.json`` (the images' channels: 1 for MNIST)."""
        folder = Path(folder)
        meta = read_json(folder / "config.json")
        info = folder / EXPLAINER_FILE
        saved = read_json(info) if info.exists() else {}
        channels = saved.get("image_channels", image_channels)
        if channels is None:
            raise ValueError(f"{folder} does not say how many channels its images have: pass "
                             "image_channels= (1 for MNIST, 3 for colour images)")
        ex = cls(model, meta["layers"], from_dict(FitConfig, meta["fit"]), device)
        ex.gans, ex.image_channels = load_generators(folder, channels, ex.device), channels
        ex.image_size = saved.get("image_size")
        return ex


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def _fit_folder(folder: str | Path | None):
    """The folder a fit writes to: ``folder``, created and locked (one fit at a time; temp
    files of a killed fit swept), or a temporary folder removed afterwards."""
    if folder is None:
        with tempfile.TemporaryDirectory(prefix="interpretgan-fit-") as tmp:
            yield Path(tmp)
        return
    out = _made(Path(folder))
    with RunLock(out):
        sweep_temp(out)
        yield out
