"""A fit's members: one generator per (layer, generator seed) pair, and the names everything
keyed by member uses (checkpoint folders, summary rows, the generators a fit returns)."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn as nn

from .layers import capture


def layer_dirname(name: str) -> str:
    """The folder of a fit member (a layer name, or a layer and generator seed)."""
    return name.replace("/", "_").replace("@", "_at_").replace(SEED_MARK, "_seed")


# A fit's members are (layer, generator seed) pairs, named by :func:`member_key`: the layer's
# own name for seed 0, "layer#seed<g>" for seed g. Everything keyed by member (checkpoint
# folders, summary rows, the generators :func:`load_generators` returns) uses these names.
SEED_MARK = "#seed"


def member_key(layer: str, seed: int) -> str:
    """The member name of generator seed ``seed`` of ``layer``."""
    return layer if seed == 0 else f"{layer}{SEED_MARK}{seed}"


def split_member(key: str) -> tuple[str, int]:
    """``"classifier.fc1#seed2"`` → ``("classifier.fc1", 2)``; a plain layer name → seed 0."""
    layer, mark, g = key.partition(SEED_MARK)
    return layer, (int(g) if mark else 0)


def members_by_layer(keys: Sequence[str]) -> dict[str, list[str]]:
    """Member names grouped by layer, both in first-seen order: ``{layer: [key per seed]}``."""
    out: dict[str, list[str]] = {}
    for k in keys:
        out.setdefault(split_member(k)[0], []).append(k)
    return out


def first_seeds(gans: Mapping[str, nn.Module]) -> dict[str, nn.Module]:
    """One generator per layer, the first seed fitted, keyed by the layer's name (what the
    explanation grids show)."""
    return {layer: gans[keys[0]] for layer, keys in members_by_layer(list(gans)).items()}


def member_features(classifier: nn.Module, x: torch.Tensor, keys: Sequence[str]) -> dict[str, torch.Tensor]:
    """The classifier's layer outputs for ``x`` (B, C, H, W), one capture per layer, keyed
    by member: ``{key: (B, *shape of its layer)}`` (seeds of one layer share the tensor)."""
    feats = capture(classifier, x, list(members_by_layer(keys)))
    return {k: feats[split_member(k)[0]] for k in keys}
