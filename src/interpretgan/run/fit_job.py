"""``interpretgan fit``: fit generators for a classifier checkpoint into a run folder, its
held-out images outside the D* that ``interpretgan run`` would diagnose it on."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ..data.splits import checkpoint_data_config, images_at, load_split
from ..diagnosis.diagnose import dstar_indices
from ..interpret.config import FitConfig
from ..interpret.fit import check_readings, fit_and_summarize
from ..interpret.layers import canonical_names
from ..models.loading import load_model
from .config import RunConfig
from ..runtime.devices import resolve_device
from ..runtime.distributed import World
from ..runtime.runs import write_json
from ..runtime.tensorboard import require_tensorboard


def fit_run(checkpoint: str | Path, run_dir: str | Path, cfg: FitConfig,
            layers: Sequence[str] | None = None, data_dir: str | None = None,
            progress: bool = True, device: str | torch.device | None = "auto",
            dstar_images: int | None = RunConfig.dstar_images, image_size: int | None = None,
            world: World | None = None, model_file: str | None = None,
            log_dir: str | Path | None = None) -> dict | None:
    """``interpretgan fit``: fit generators for a classifier checkpoint into ``run_dir/fit``
    on ``device`` (``"auto"``: a GPU if there is one) and write ``summary.json`` (agreement +
    KID per layer). Resumes a killed run, also on another device.

    The held-out images stay outside the D* of ``dstar_images`` test images that
    ``interpretgan run`` would diagnose this classifier on (:func:`fit_and_summarize`).
    ``image_size``: the classifier's input side (default: the one its checkpoint records).
    ``model_file``: the code of a checkpoint saved from a model file (:mod:`.loading`).
    ``world``: the ranks share the layers out (:func:`fit_and_summarize`), each on its own
    ``world.device``; rank 0 returns the summary, the others None. ``log_dir``: TensorBoard
    events of the fit there (:func:`~interpretgan.interpret.fit.fit_generators`).
    """
    world = world or World()
    if world.distributed:
        device = world.device
    if log_dir is not None:
        require_tensorboard()  # the optional package, before any work
    dev = resolve_device(device)  # fail before any work on a bad name
    classifier = load_model(checkpoint, device=dev, model_file=model_file)
    data = checkpoint_data_config(checkpoint, data_dir=data_dir, image_size=image_size)
    test = load_split(data, "test")
    example = images_at(test, torch.arange(min(2, len(test))))[0].to(dev)
    if layers:  # traced on one forward, one spelling each (``relu1@0`` is ``relu1``)
        layers = canonical_names(classifier, example, layers)
    check_readings(classifier, example, layers, cfg)
    summary = fit_and_summarize(classifier, data, cfg, Path(run_dir) / "fit", layers,
                                dstar_indices=dstar_indices(test, dstar_images), progress=progress,
                                world=world, log_dir=log_dir)
    if summary is None:
        return None
    summary["checkpoint"] = str(checkpoint)
    write_json(Path(run_dir) / "fit" / "summary.json", summary)  # with the checkpoint named
    return summary
