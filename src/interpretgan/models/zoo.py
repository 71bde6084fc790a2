"""Classifier zoo: SmallCNN (TRADES/ATTA MNIST model), VGG16, WideResNet-34-10.

Every model takes images in [0, 1] (any normalisation is a module inside the model),
has a ``pool`` switch (``"max"`` or ``"avg"``) wherever its architecture pools, and
declares ``default_layers``: the module paths whose outputs the paper explains.

>>> m = create("smallcnn", pool="avg", input_size=28)
>>> list_models()
['smallcnn', 'vgg16', 'wrn-34-10']
"""
from __future__ import annotations

import inspect
import logging
from collections import OrderedDict
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .wrappers import Normalize
from ..registry import Registry

log = logging.getLogger(__name__)

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
POOLS = ("max", "avg")


def register_model(name: str):
    """Decorator: ``@register_model("smallcnn")`` on a factory returning an ``nn.Module``."""
    return MODELS.register(name)


def create(name: str, **kwargs) -> nn.Module:
    """Build a registered model; the result remembers ``(name, kwargs)`` for checkpoints."""
    model = MODELS.get(name)(**kwargs)
    model.model_name = name.lower()
    model.model_kwargs = dict(kwargs)
    return model


def list_models() -> list[str]:
    return MODELS.names()


def _pool(kind: str, kernel: int, stride: int | None = None) -> nn.Module:
    if kind not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, not {kind!r}")
    return nn.MaxPool2d(kernel, stride) if kind == "max" else nn.AvgPool2d(kernel, stride)


def input_channels(model: nn.Module) -> int | None:
    """The input channels of ``model``'s first registered ``Conv2d`` (None without one)."""
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else None


# --------------------------------------------------------------------------- SmallCNN
class SmallCNN(nn.Module):
    """The MNIST model of Madry et al. / TRADES / ATTA: 4 convs, 2 pools, 3 FCs.

    Module names match TRADES' published state_dict (``feature_extractor.conv1`` …
    ``classifier.fc3``), so its checkpoints load unchanged (``input_size=28``).
    x: (B, 1, input_size, input_size) → logits (B, num_classes).
    """

    default_layers = (
        "feature_extractor.relu1",  # Conv1
        "feature_extractor.pool1",  # Conv2 (its block ends with the pooling layer)
        "feature_extractor.relu3",  # Conv3
        "feature_extractor.pool2",  # Conv4
        "classifier.relu1",  # FC1
        "classifier.relu2",  # FC2
        "classifier.fc3",  # FC3
    )
    layer_labels = ("Conv1", "Conv2", "Conv3", "Conv4", "FC1", "FC2", "FC3")

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 32,
                 pool: str = "max", drop: float = 0.5):
        super().__init__()
        side = ((input_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"input_size {input_size} is too small for SmallCNN")
        self.feature_extractor = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(in_channels, 32, 3)), ("relu1", nn.ReLU()),
            ("conv2", nn.Conv2d(32, 32, 3)), ("relu2", nn.ReLU()),
            ("pool1", _pool(pool, 2, 2)),
            ("conv3", nn.Conv2d(32, 64, 3)), ("relu3", nn.ReLU()),
            ("conv4", nn.Conv2d(64, 64, 3)), ("relu4", nn.ReLU()),
            ("pool2", _pool(pool, 2, 2)),
        ]))
        self.classifier = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(64 * side * side, 200)), ("relu1", nn.ReLU()),
            ("drop", nn.Dropout(drop)),
            ("fc2", nn.Linear(200, 200)), ("relu2", nn.ReLU()),
            ("fc3", nn.Linear(200, num_classes)),
        ]))
        # TRADES' initialisation: Kaiming-normal convs with zero bias, a zero last layer.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.constant_(self.classifier.fc3.weight, 0)
        nn.init.constant_(self.classifier.fc3.bias, 0)

    def forward(self, x):
        return self.classifier(self.feature_extractor(x).flatten(1))


@register_model("smallcnn")
def smallcnn(num_classes: int = 10, in_channels: int = 1, input_size: int = 32, pool: str = "max",
             drop: float = 0.5) -> SmallCNN:
    return SmallCNN(num_classes, in_channels, input_size, pool, drop)


# --------------------------------------------------------------------------- VGG16
VGG16_CFG = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(nn.Module):
    """VGG16 with batch norm: five conv blocks (each ends with a 2×2 pool), three FCs.

    ``input_size`` 32 (CIFAR-10) or 128 (CelebA); x: (B, 3, s, s) → (B, num_classes).
    ``width`` scales every conv's width (1.0: VGG16's 64 … 512).
    Explained layers: the outputs of ``features.block1..5`` and the FC activations.
    """

    default_layers = ("features.block1", "features.block2", "features.block3", "features.block4",
                      "features.block5", "classifier.relu1", "classifier.relu2", "classifier.fc3")
    layer_labels = ("Conv Block1", "Conv Block2", "Conv Block3", "Conv Block4", "Conv Block5",
                    "FC1", "FC2", "FC3")

    def __init__(self, num_classes: int = 10, in_channels: int = 3, input_size: int = 32,
                 pool: str = "max", hidden: int = 512, drop: float = 0.5,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 width: float = 1.0):
        super().__init__()
        if input_size % 32:
            raise ValueError("VGG16 needs an input size divisible by 32")
        if width <= 0:
            raise ValueError(f"VGG16 width must be greater than 0, got {width}")
        self.normalize = Normalize(mean, std) if mean is not None else nn.Identity()
        blocks, c = OrderedDict(), in_channels
        for b, widths in enumerate(VGG16_CFG, 1):
            layers = OrderedDict()
            for i, w in enumerate(widths, 1):
                w = max(1, round(w * width))  # width < 1: a narrower VGG16 (tests, quick looks)
                layers[f"conv{i}"] = nn.Conv2d(c, w, 3, padding=1)
                layers[f"bn{i}"] = nn.BatchNorm2d(w)
                layers[f"relu{i}"] = nn.ReLU()
                c = w
            layers["pool"] = _pool(pool, 2, 2)
            blocks[f"block{b}"] = nn.Sequential(layers)
        self.features = nn.Sequential(blocks)
        side = input_size // 32
        self.classifier = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(c * side * side, hidden)), ("relu1", nn.ReLU()),
            ("drop1", nn.Dropout(drop)),
            ("fc2", nn.Linear(hidden, hidden)), ("relu2", nn.ReLU()),
            ("drop2", nn.Dropout(drop)),
            ("fc3", nn.Linear(hidden, num_classes)),
        ]))

    def forward(self, x):
        return self.classifier(self.features(self.normalize(x)).flatten(1))


@register_model("vgg16")
def vgg16(num_classes: int = 10, in_channels: int = 3, input_size: int = 32, pool: str = "max",
          hidden: int = 512, drop: float = 0.5, mean=None, std=None, width: float = 1.0) -> VGG16:
    return VGG16(num_classes, in_channels, input_size, pool, hidden, drop, mean, std, width)


# --------------------------------------------------------------------------- WideResNet
class BasicBlock(nn.Module):
    """Pre-activation residual block of WideResNet (module names as in TRADES)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, drop: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.drop = drop
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = (None if self.equal_in_out
                             else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False))

    def forward(self, x):
        o = self.relu1(self.bn1(x))
        y = self.conv1(o)
        y = self.relu2(self.bn2(y))
        if self.drop > 0:
            y = F.dropout(y, p=self.drop, training=self.training)
        y = self.conv2(y)
        return y + (x if self.equal_in_out else self.convShortcut(o))


class NetworkBlock(nn.Module):
    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int, drop: float):
        super().__init__()
        self.layer = nn.Sequential(*[
            BasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, drop)
            for i in range(n)
        ])

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    """WideResNet-depth-widen as used by TRADES (state_dict names match: ``block1.layer.0.conv1``).

    The architecture pools once, globally, before the FC layer: ``pool`` switches that pool.
    x: (B, 3, 32, 32) → (B, num_classes).
    """

    default_layers = ("conv1", "block1", "block2", "block3", "relu", "fc")
    layer_labels = ("Conv1", "Group1", "Group2", "Group3", "BN-ReLU", "FC")

    def __init__(self, depth: int = 34, widen: int = 10, num_classes: int = 10, in_channels: int = 3,
                 pool: str = "avg", drop: float = 0.0, mean=None, std=None):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError("WideResNet depth must be 6n+4")
        n = (depth - 4) // 6
        ch = [16, 16 * widen, 32 * widen, 64 * widen]
        self.normalize = Normalize(mean, std) if mean is not None else nn.Identity()
        self.conv1 = nn.Conv2d(in_channels, ch[0], 3, 1, 1, bias=False)
        self.block1 = NetworkBlock(n, ch[0], ch[1], 1, drop)
        self.block2 = NetworkBlock(n, ch[1], ch[2], 2, drop)
        self.block3 = NetworkBlock(n, ch[2], ch[3], 2, drop)
        self.bn1 = nn.BatchNorm2d(ch[3])
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveMaxPool2d(1) if pool == "max" else nn.AdaptiveAvgPool2d(1)
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, not {pool!r}")
        self.fc = nn.Linear(ch[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.block3(self.block2(self.block1(self.conv1(self.normalize(x)))))
        return self.fc(self.pool(self.relu(self.bn1(x))).flatten(1))


@register_model("wrn-34-10")
def wrn_34_10(num_classes: int = 10, in_channels: int = 3, pool: str = "avg", drop: float = 0.0,
              depth: int = 34, widen: int = 10, mean=None, std=None) -> WideResNet:
    return WideResNet(depth, widen, num_classes, in_channels, pool, drop, mean, std)


def fast_layout(model: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """On the CPU, keep a conv net's 4-D weights channels-last (NHWC), in place.

    oneDNN then runs convolutions and max-pooling in NHWC: per step on SmallCNN, natural,
    ATTA-1 TRADES, TRADES and PGD ran 1.23–1.27× faster here (``benchmarks/channels_last.py``), with
    the same results up to float rounding. Inputs need no change (a channels-last weight
    makes the first conv's output channels-last). Elsewhere ``model`` is left as it is.
    """
    if torch.device(device).type == "cpu" and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        model.to(memory_format=torch.channels_last)
    return model


def classifier_state(model: nn.Module) -> dict:
    """The self-describing part of a checkpoint: model name, kwargs and weights."""
    return {
        "model": getattr(model, "model_name", None),
        "model_kwargs": getattr(model, "model_kwargs", {}),
        "state_dict": {k: v.detach().clone(memory_format=torch.contiguous_format)
                       for k, v in model.state_dict().items()},  # layout-neutral on disk
    }


# --------------------------------------------------------------------------- data / model
def dataset_shape(ds) -> tuple[int, int, int]:
    base = ds.dataset if isinstance(ds, torch.utils.data.Subset) else ds
    return tuple(base.shape)


def dataset_classes(ds) -> int:
    base = ds.dataset if isinstance(ds, torch.utils.data.Subset) else ds
    return base.num_classes


def build_model(model_cfg, shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Create the configured model for images of ``shape`` (C, H, W)."""
    factory = MODELS.get(model_cfg.name)
    accepted = inspect.signature(factory).parameters
    kwargs = {"num_classes": num_classes, "in_channels": shape[0], "input_size": shape[-1],
              "pool": model_cfg.pool}
    kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    kwargs.update(model_cfg.kwargs)
    return create(model_cfg.name, **kwargs)
