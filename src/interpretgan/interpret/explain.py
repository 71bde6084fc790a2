"""Explanations of natural and adversarial images (paper Figures 3, 5, 8–11).

:func:`explain_images` computes, for each image and each layer, the explanation
x̂_i = G_i(C_i(f_pre_i(x))) and the label f gives it; :func:`explanation_grid` draws them
(rows: natural image then its explanations, adversarial image then its explanations);
:func:`attributions` and :func:`attribution_grid` do the same for Captum's baselines
(DeepLIFT, saliency, input×gradient, integrated gradients, occlusion).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from ..data.splits import (balanced_order, checkpoint_data_config, dataset_labels, images_at,
                           load_split)
from .explaining import explain_batch
from .fit import load_generators
from .members import first_seeds
from .layers import hooked, layer_labels
from ..models.loading import load_model
from ..robust.attacks import get_attack
from ..runtime.devices import eval_mode, module_device, resolve_device
from ..runtime.figures import save_figure
from ..runtime.runs import RunLock, save_checkpoint, sweep_temp, write_json
from ..settings import MAX_EXPLAIN_IMAGES

log = logging.getLogger(__name__)

BASELINES = ("DeepLIFT", "Saliency", "Input×Gradient", "Integrated Gradients", "Occlusion")


@torch.no_grad()
def explain_images(classifier: nn.Module, gans: dict, x: torch.Tensor) -> dict:
    """x: (N, C, H, W) → ``{"pred": (N,), "pred_conf": (N,), "explanations": {layer:
    (N, C, H, W)}, "labels": {layer: (N,)}, "confidence": {layer: (N,)}}``: f's label for the
    input and for every explanation, with f's softmax probability of that label. Runs on the
    classifier's device (``gans`` there too); the results are CPU tensors."""
    x = x.to(module_device(classifier))
    with eval_mode(classifier):
        conf, pred = classifier(x).float().softmax(1).max(1)
        out = {"pred": pred.cpu(), "pred_conf": conf.cpu(), "explanations": {}, "labels": {},
               "confidence": {}}
        for n, xh in explain_batch(classifier, gans, x).items():
            out["explanations"][n] = xh.cpu()
            conf, label = classifier(xh).float().softmax(1).max(1)
            out["labels"][n], out["confidence"][n] = label.cpu(), conf.cpu()
    return out


def _img(ax, t: torch.Tensor) -> None:
    a = t.detach().float().cpu().numpy()
    if a.shape[0] == 1:
        ax.imshow(a[0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.clip(a.transpose(1, 2, 0), 0, 1))
    ax.set_xticks([])
    ax.set_yticks([])


def explanation_grid(nat: dict, adv: dict, x: torch.Tensor, x_adv: torch.Tensor,
                     y: torch.Tensor, layer_labels: Sequence[str], path: str | Path,
                     class_names: Sequence[str] | None = None) -> Path:
    """For each image, a natural row and an adversarial row; columns are the input and one
    explanation per layer, each titled with the label f gives it and f's confidence in it (red
    when the label differs from the true label): :func:`draw_explanations` of ``nat``/``adv``
    (:func:`explain_images`)."""
    return draw_explanations(explanations_doc(nat, adv, x, x_adv, y, layer_labels, class_names), path)


def save_explanations(path: str | Path, nat: dict, adv: dict, x: torch.Tensor, x_adv: torch.Tensor,
                      y: torch.Tensor, layer_labels: Sequence[str],
                      class_names: Sequence[str] | None) -> Path:
    """The explanations behind the grids (:func:`explanations_doc`), for reports to redraw
    them."""
    save_checkpoint(path, explanations_doc(nat, adv, x, x_adv, y, layer_labels, class_names))
    return Path(path)


def explanations_doc(nat: dict, adv: dict, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
                     layer_labels: Sequence[str], class_names: Sequence[str] | None) -> dict:
    """What an explanation grid shows (the paper's Figures 4 and 5 at the images' own
    resolution): images as uint8 (N, C, H, W) (inputs) and {layer: (N, C, H, W)}, f's labels
    and confidences, the true labels (N,)."""

    def u8(t: torch.Tensor) -> torch.Tensor:
        return (t.clamp(0, 1) * 255).round().to(torch.uint8)

    doc = {"layers": list(nat["explanations"]), "layer_labels": list(layer_labels),
           "classes": list(class_names) if class_names else None, "true": y.clone()}
    for kind, res, img in (("natural", nat, x), ("adversarial", adv, x_adv)):
        doc[kind] = {"input": u8(img), "pred": res["pred"], "pred_conf": res["pred_conf"],
                     "explanations": {n: u8(v) for n, v in res["explanations"].items()},
                     "labels": res["labels"], "confidence": res["confidence"]}
    return doc


def attributions(classifier: nn.Module, x: torch.Tensor, target: torch.Tensor,
                 methods: Sequence[str] = BASELINES) -> dict[str, torch.Tensor]:
    """Captum attributions of ``classifier`` for ``x`` (N, C, H, W) towards ``target`` (N,),
    computed on the classifier's device. Returns ``{method: (N, C, H, W)}`` as CPU tensors;
    the model's mode is restored afterwards.

    DeepLIFT needs every nonlinearity module to run once per forward (Captum's rule); for a
    model that calls one module twice (torchvision's ResNet blocks call ``self.relu`` twice)
    it is left out with a log line, and the other methods are returned."""
    # captum is heavy to import (seconds) and only the baselines need it: imported here.
    from captum.attr import DeepLift, InputXGradient, IntegratedGradients, Occlusion, Saliency

    out = {}
    dev = module_device(classifier)
    target = target.to(dev)
    # occlusion windows of 4 px at 32 px, an eighth of the side above (16 px at 128 px: 225
    # windows per image where 4 px windows would need 3,969 forward passes)
    win = max(4, x.shape[-1] // 8)
    with eval_mode(classifier):
        x = x.detach().to(dev).clone().requires_grad_(True)
        makers = {
            "DeepLIFT": lambda: DeepLift(classifier).attribute(x, target=target),
            "Saliency": lambda: Saliency(classifier).attribute(x, target=target),
            "Input×Gradient": lambda: InputXGradient(classifier).attribute(x, target=target),
            "Integrated Gradients": lambda: IntegratedGradients(classifier).attribute(
                x, target=target, n_steps=32, internal_batch_size=64),
            "Occlusion": lambda: Occlusion(classifier).attribute(
                x, target=target, sliding_window_shapes=(x.shape[1], win, win),
                strides=(x.shape[1], win // 2, win // 2), perturbations_per_eval=64),
        }
        for m in methods:
            if m == "DeepLIFT" and _reuses_a_module(classifier, x[:1]):
                log.warning("DeepLIFT baseline left out: the model calls one module more than "
                            "once per forward, which Captum's DeepLIFT cannot attribute through")
                continue
            out[m] = makers[m]().detach().cpu()
    return out


# the nonlinearities DeepLIFT's rules replace (each must run once per forward)
_DEEPLIFT_NONLINEAR = (nn.ReLU, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Softmax,
                       nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)


def _reuses_a_module(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether one forward of ``x`` (1, C, H, W) calls a nonlinearity module more than once."""
    calls: dict[int, int] = {}

    def count(mod, inp, out):
        calls[id(mod)] = calls.get(id(mod), 0) + 1

    nonlinear = [m for m in model.modules() if isinstance(m, _DEEPLIFT_NONLINEAR)]
    with hooked(nonlinear, count), torch.no_grad():
        model(x)
    return any(c > 1 for c in calls.values())


def attribution_grid(x: torch.Tensor, x_adv: torch.Tensor, attr_nat: dict, attr_adv: dict,
                     path: str | Path) -> Path:
    """Figure 5's baselines: per image a natural and an adversarial row, one column per method
    (heat maps of the attribution summed over channels, symmetric colour scale)."""
    methods = list(attr_nat)
    n, cols = len(x), len(methods) + 1
    fig, axes = plt.subplots(2 * n, cols, figsize=(1.25 * cols, 1.35 * 2 * n), squeeze=False)
    for i in range(n):
        for r, (img, att, kind) in enumerate([(x, attr_nat, "natural"), (x_adv, attr_adv, "adversarial")]):
            row = axes[2 * i + r]
            _img(row[0], img[i])
            row[0].set_ylabel("natural" if r == 0 else "adv.", fontsize=7)
            for j, m in enumerate(methods, 1):
                a = att[m][i].sum(0).cpu().numpy()
                v = float(np.abs(a).max()) or 1.0
                row[j].imshow(a, cmap="bwr", vmin=-v, vmax=v)
                row[j].set_xticks([])
                row[j].set_yticks([])
                if 2 * i + r == 0:
                    row[j].set_title(m, fontsize=7)
    _title(fig, "Attribution baselines (Captum) for f's label")
    return save_figure(fig, path)


def _title(fig, text: str) -> None:
    """A title just above the grid (matplotlib's default top margin is a share of the figure's
    height, which leaves a wide gap over tall grids)."""
    height = fig.get_size_inches()[1]
    top = 1 - 0.7 / height
    fig.subplots_adjust(top=top)
    fig.suptitle(text, fontsize=8, y=top + 0.55 / height)


def explain_run(run_dir: str | Path, n_images: int = 8, attack: str = "pgd-40",
                out_dir: str | Path | None = None, data_dir: str | None = None, seed: int = 0,
                model: nn.Module | None = None, device: str | torch.device | None = "auto",
                image_size: int | None = None, model_file: str | None = None) -> dict:
    """``interpretgan explain``: grids for ``n_images`` test images of a run folder
    holding ``checkpoints/final.pt`` and ``fit/`` (drawn by a shuffle seeded with ``seed``,
    balanced by class: :func:`~interpretgan.data.balanced_order`), and their adversarial
    versions (random starts from a CPU generator seeded with ``seed``). The classifier (``model``, or the run's
    checkpoint), the generators, the attack and the baselines run on ``device`` (``"auto"``:
    a GPU if there is one); the figures and ``explain.json`` are made from CPU copies.
    ``image_size``: the classifier's input side (default: the one its checkpoint records).
    ``model_file``: the code of a checkpoint saved from a model file (:mod:`.loading`)."""

    dev = resolve_device(device)  # fail before any work on a bad name
    if not 1 <= n_images <= MAX_EXPLAIN_IMAGES:
        raise ValueError(f"--images must be in 1 … {MAX_EXPLAIN_IMAGES:,}, got {n_images}")
    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoints" / "final.pt"
    classifier = (model.to(dev) if model is not None
                  else load_model(ckpt, device=dev, model_file=model_file))
    if not (run_dir / "fit" / "config.json").exists():
        raise FileNotFoundError(f"{run_dir} has no generators (fit/config.json): run "
                                f"`interpretgan fit --checkpoint {ckpt}` first")
    data = checkpoint_data_config(ckpt, data_dir=data_dir, image_size=image_size)
    test = load_split(data, "test")
    x, y = images_at(test, balanced_order(dataset_labels(test), seed)[:n_images])  # spread over classes
    fitted = load_generators(run_dir / "fit", image_channels=x.shape[1])
    gans = {n: g.to(dev) for n, g in first_seeds(fitted).items()}  # one generator per layer
    x_adv = get_attack(attack, data.dataset)(classifier, x.to(dev), y.to(dev),
                                             generator=torch.Generator().manual_seed(seed)).cpu()
    nat, adv = explain_images(classifier, gans, x), explain_images(classifier, gans, x_adv)
    out = Path(out_dir or run_dir / "explain")
    labels = layer_labels(classifier, list(gans))
    classes = getattr(test, "classes", None) or None
    an = attributions(classifier, x, nat["pred"])
    aa = attributions(classifier, x_adv, adv["pred"])
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out):
        sweep_temp(out)
        grid = explanation_grid(nat, adv, x, x_adv, y, labels, out / "explanations.png", classes)
        base = attribution_grid(x, x_adv, an, aa, out / "baselines.png")
        tensors = save_explanations(out / "explanations.pt", nat, adv, x, x_adv, y, labels, classes)
        doc = {"attack": attack, "true": y.tolist(), "natural_pred": nat["pred"].tolist(),
               "adversarial_pred": adv["pred"].tolist(), "layers": list(gans), "layer_labels": labels,
               "natural_labels": {n: v.tolist() for n, v in nat["labels"].items()},
               "adversarial_labels": {n: v.tolist() for n, v in adv["labels"].items()},
               "natural_confidence": {n: v.tolist() for n, v in nat["confidence"].items()},
               "adversarial_confidence": {n: v.tolist() for n, v in adv["confidence"].items()},
               "figures": {"explanations": str(grid), "baselines": str(base)},
               "tensors": str(tensors)}
        write_json(out / "explain.json", doc)
    return doc


def draw_explanations(doc: dict, path: str | Path, dpi: int = 100) -> Path:
    """The one explanation-grid renderer: the paper's Figures 4 and 5 from explanations as
    :func:`explanations_doc` holds them (also saved as ``explain/explanations.pt``): per image a natural row and an
    adversarial row; columns the input, then one explanation per interpreted layer (conv
    blocks, FC layers), each drawn at its own resolution (one image pixel per figure pixel:
    128 px faces stay 128 px; images under 96 px enlarged by a whole factor, 32 px MNIST
    digits to 96 px) with f's label and confidence above it, red where the label is not the
    true one. Grey-scale images are drawn too (one channel)."""

    classes = doc.get("classes") or []
    name = lambda c: str(classes[c]) if c < len(classes) else str(c)  # noqa: E731
    true = [int(t) for t in doc["true"]]
    layers, labels = doc["layers"], doc["layer_labels"]
    n, cols = len(true), len(layers) + 1
    side = int(doc["natural"]["input"].shape[-1])
    zoom = max(1, -(-96 // side))  # a whole number of figure pixels per image pixel
    pw = side * zoom / dpi  # panel side in inches
    gap, head, left, group = 0.08, 0.36, 0.32, 0.16
    width = left + cols * (pw + gap)
    height = 0.35 + n * (2 * (pw + head) + group)
    fig = plt.figure(figsize=(width, height))
    for i in range(n):
        for r, kind in enumerate(("natural", "adversarial")):
            res = doc[kind]
            top = 0.35 + i * (2 * (pw + head) + group) + r * (pw + head) + head
            y0 = 1 - (top + pw) / height
            panels = [(res["input"][i], int(res["pred"][i]), float(res["pred_conf"][i]), "input")]
            panels += [(res["explanations"][l][i], int(res["labels"][l][i]),
                        float(res["confidence"][l][i]), lab) for l, lab in zip(layers, labels)]
            for j, (img, lab, conf, col) in enumerate(panels):
                ax = fig.add_axes(((left + j * (pw + gap)) / width, y0, pw / width, pw / height))
                a = img.numpy()
                if a.shape[0] == 1:
                    ax.imshow(a[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
                else:
                    ax.imshow(np.ascontiguousarray(a.transpose(1, 2, 0)), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                head_text = f"{col}\n" if i == 0 and r == 0 else ""
                ax.set_title(f"{head_text}{name(lab)} {100 * conf:.0f}%", fontsize=7, pad=2,
                             color="black" if lab == true[i] else "#d62728")
                if j == 0:
                    ax.set_ylabel("natural" if r == 0 else "adversarial", fontsize=7)
    fig.suptitle("InterpretGAN explanations per layer: f's label and confidence above each "
                 "(red: not the true label)", fontsize=8, y=1 - 0.12 / height)
    return save_figure(fig, path, dpi=dpi)
