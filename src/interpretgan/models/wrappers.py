"""What wraps a classifier so the toolkit can read it: input normalisation (a user's model
that expects normalised images) and the choice of one tensor from a structured output."""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Sequence

import torch
import torch.nn as nn



class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, as a module so the model takes [0, 1] inputs."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def split_normalization(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """``(MEAN, STD)`` or ``(M1, …, Mc, S1, …, Sc)`` → ``(means, stds)``."""
    half = len(values) // 2
    return list(values[:half]), list(values[half:])


def with_normalization(model: nn.Module, values: Sequence[float]) -> nn.Module:
    """``model`` fed ``(x - mean) / std`` (a :class:`Normalize` at the start of its
    ``forward``), so it takes [0, 1] images (B, C, H, W) while its layer names and
    ``state_dict`` stay its own (hooks on the model itself, as Captum's, see the [0, 1]
    images). ``values``: see :func:`split_normalization`. Returns ``model``, changed in place."""
    if getattr(model, "input_normalization", None) is not None:
        raise ValueError("this model already has a normalisation in front; give it once")
    norm = Normalize(*split_normalization(values))
    inner = model.forward

    def forward(x, *args, **kwargs):
        return inner((x - norm.mean.to(x)) / norm.std.to(x), *args, **kwargs)

    model.forward = forward
    model.input_normalization = tuple(values)
    return model


# --------------------------------------------------------------------------- outputs
_INDEX = re.compile(r"\[?(-?\d+)\]?")


def _describe(out) -> str:
    """A model output's kind in a few words, for the one-line errors."""
    if isinstance(out, torch.Tensor):
        return f"a tensor {tuple(out.shape)}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)}"
    if isinstance(out, Mapping):
        return f"a {type(out).__name__} with keys {', '.join(map(str, out)) or '(none)'}"
    return f"a {type(out).__name__}"


def _pick(out, selector: str):
    """The part of ``out`` that ``selector`` names: ``"[i]"``/``"i"`` an element of a
    tuple/list, else a key of a dict or an attribute of an object; KeyError if it has none."""
    index = _INDEX.fullmatch(selector)
    if isinstance(out, (tuple, list)) and index is not None:
        i = int(index[1])
        if -len(out) <= i < len(out):
            return out[i]
    elif isinstance(out, Mapping) and selector in out:
        return out[selector]
    elif not isinstance(out, (tuple, list, Mapping, torch.Tensor)) and hasattr(out, selector):
        return getattr(out, selector)
    raise KeyError(selector)


def read_output(out, selector: str | None = None) -> tuple[torch.Tensor, str | None]:
    """The logits (B, classes) in a forward's output ``out`` and the selector that found
    them (canonical: ``"[i]"`` for an index, the name for a key or attribute; None when
    ``out`` is the logits tensor itself). With no ``selector``: a tensor as it is, a
    tuple's/list's first element, a dict's ``"logits"`` key, an object's ``.logits``
    (Hugging Face outputs). Anything else is one line (``ValueError``)."""
    if selector is None:
        if isinstance(out, torch.Tensor):
            return out, None
        for auto in ("[0]", "logits"):
            try:
                value = _pick(out, auto)
            except KeyError:
                continue
            if isinstance(value, torch.Tensor):
                return value, auto
        raise ValueError(f"your model's forward returns {_describe(out)}, without logits where "
                         "they are looked for (a tuple's first element, 'logits'): pick them "
                         "with --output INDEX|KEY|ATTRIBUTE")
    if isinstance(out, torch.Tensor):
        raise ValueError(f"--output {selector}: your model's forward returns {_describe(out)}, "
                         "its logits: leave --output out")
    try:
        value = _pick(out, selector)
    except KeyError:
        raise ValueError(f"--output {selector} does not exist on your model's output, "
                         f"{_describe(out)}") from None
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"--output {selector} picks {_describe(value)} from your model's "
                         "output, not a tensor of logits")
    index = _INDEX.fullmatch(selector)
    return value, (f"[{index[1]}]" if index is not None and isinstance(out, (tuple, list)) else selector)


def select_output(model: nn.Module, selector: str | None = None, auto: bool = False) -> nn.Module:
    """``model`` whose forward returns the logits :func:`read_output` finds with ``selector``
    in what its own forward returns (None: looked for on every call). Changed in place (its
    forward), so its layer names and ``state_dict`` stay its own; ``model.output_selection``
    records ``{"selector": selector, "auto": auto}`` (``auto``: the selector was found, not
    given). Returns ``model``."""
    if getattr(model, "output_selection", None) is not None:
        raise ValueError("this model's output is already selected; select it once")
    inner = model.forward

    def forward(*args, **kwargs):
        return read_output(inner(*args, **kwargs), selector)[0]

    model.forward = forward
    model.output_selection = {"selector": selector, "auto": bool(auto)}
    return model


def output_selection(model: nn.Module) -> dict:
    """How ``model``'s logits are read: ``{"selector": "[0]" | "logits" | None, "auto": bool}``
    (None: its forward returns them)."""
    return dict(getattr(model, "output_selection", None) or {"selector": None, "auto": False})
