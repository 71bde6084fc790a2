"""The hidden-layer contract: name a layer by module path, tap its output, split ``f``.

A *layer point* is the output of one call of one module. It is named by the module's
path (``"feature_extractor.relu2"``, ``"classifier.fc1"``, ``"layer3.4"``); when a module
is called several times in one forward, ``"path@k"`` names its k-th call (0-based).
One module instance registered under several names (TRADES' SmallCNN uses a single
``ReLU`` everywhere) is resolved by order: its i-th registered name is its i-th call.

No model code is edited: everything works through forward hooks, which are always
removed (``try``/``finally``), and the model's train/eval mode is never changed.

>>> list_layers(model)                       # nameable paths
>>> feats = capture(model, x, ["feature_extractor.relu1", "classifier.fc1"])
>>> f_pre, f_post = split(model, "classifier.fc1")
>>> torch.equal(f_post(f_pre(x)), model(x))  # in eval mode
True
"""
from __future__ import annotations

import dataclasses
import weakref
from typing import Callable, Sequence

import torch
import torch.nn as nn

from .registry import UnknownNameError


class LayerNameError(UnknownNameError):
    """An unknown or ambiguous layer name; the message lists the nameable layers."""


class _Stop(Exception):
    """Raised inside a hook to end a forward pass once every wanted output is captured."""


@dataclasses.dataclass(frozen=True)
class LayerPoint:
    name: str
    module: nn.Module
    call: int | None  # which call of ``module`` (None: the module must be called once)
    shared: int  # how many names the module is registered under


def _all_paths(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules(remove_duplicate=False) if n]


def list_layers(model: nn.Module, example: torch.Tensor | None = None) -> list[str]:
    """Every nameable layer path of ``model``, in registration order.

    With an ``example`` input (B, ...), the forward is traced: modules never called are
    left out and modules called k > 1 times appear as ``path@0`` … ``path@{k-1}``.
    """
    paths = _all_paths(model)
    if example is None:
        return [n for n, _ in paths]
    counts = _call_counts(model, example)
    names_of: dict[int, list[str]] = {}
    for n, m in paths:
        names_of.setdefault(id(m), []).append(n)
    out = []
    for n, m in paths:
        c = counts.get(id(m), 0)
        shared = len(names_of[id(m)])
        if c == 0:
            continue
        if c == shared:
            out.append(n)
        elif shared == 1:
            out.extend(f"{n}@{k}" for k in range(c))
        else:
            out.append(n)  # shared and called a different number of times: name is ambiguous
    return out


def _call_counts(model: nn.Module, example: torch.Tensor) -> dict[int, int]:
    counts: dict[int, int] = {}
    handles = []

    def hook(mod, inp, out):
        counts[id(mod)] = counts.get(id(mod), 0) + 1

    seen = set()
    try:
        for _, m in _all_paths(model):
            if id(m) not in seen:
                seen.add(id(m))
                handles.append(m.register_forward_hook(hook))
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return counts


def resolve(model: nn.Module, name: str) -> LayerPoint:
    """Turn a layer name into a :class:`LayerPoint`, or raise :class:`LayerNameError`."""
    paths = _all_paths(model)
    base, _, k = name.partition("@")
    by_name = dict(paths)
    if base not in by_name or (k and not k.isdigit()):
        raise LayerNameError(
            f"unknown layer {name!r} for {type(model).__name__}; nameable layers: "
            + ", ".join(n for n, _ in paths))
    module = by_name[base]
    names = [n for n, m in paths if m is module]
    if k:
        return LayerPoint(name, module, int(k), len(names))
    if len(names) > 1:
        return LayerPoint(name, module, names.index(base), len(names))
    return LayerPoint(name, module, None, 1)


_VERIFIED: "weakref.WeakKeyDictionary[nn.Module, set[str]]" = weakref.WeakKeyDictionary()


def capture(model: nn.Module, x: torch.Tensor, names: Sequence[str],
            stop_early: bool = True, inputs: bool = False) -> dict[str, torch.Tensor]:
    """Outputs of the named layers for input ``x`` from one forward pass (with ``inputs``:
    the first positional input of each named module's call instead, e.g. what a max-pooling
    layer pools).

    Returns ``{name: tensor (B, ...)}``, differentiable with respect to ``x``. With
    ``stop_early`` the forward ends as soon as the last wanted tensor is captured (after
    the first use of a name, whose call count is checked on one full forward).
    The model's mode is left as it is; every hook is removed before returning.
    """
    points = [resolve(model, n) for n in names]
    verified = _VERIFIED.setdefault(model, set())
    unchecked = [p for p in points if p.name not in verified and (p.call is None or p.shared > 1)]
    stop_early = stop_early and not unchecked
    wanted: dict[int, list[tuple[int | None, str]]] = {}
    for p in points:
        wanted.setdefault(id(p.module), []).append((p.call, p.name))
    out: dict[str, torch.Tensor] = {}
    calls: dict[int, int] = {}
    handles = []

    def hook(mod, inp, output):
        i = calls.get(id(mod), 0)
        calls[id(mod)] = i + 1
        value = (inp[0] if inp else None) if inputs else output
        for call, nm in wanted[id(mod)]:
            if (call is None and i == 0) or call == i:
                if not isinstance(value, torch.Tensor):
                    raise TypeError(f"layer {nm!r} {'takes' if inputs else 'returns'} "
                                    f"{type(value).__name__}, not a tensor")
                out[nm] = value
        if stop_early and len(out) == len(points):
            raise _Stop

    try:
        for p in {id(p.module): p for p in points}.values():
            handles.append(p.module.register_forward_hook(hook))
        try:
            model(x)
        except _Stop:
            pass
    finally:
        for h in handles:
            h.remove()
    for p in unchecked:
        got = calls.get(id(p.module), 0)
        if p.call is None and got > 1:
            raise LayerNameError(
                f"layer {p.name!r} is called {got} times per forward: name one call as "
                f"'{p.name}@0' … '{p.name}@{got - 1}'")
        if p.shared > 1 and got != p.shared:
            raise LayerNameError(
                f"layer {p.name!r}: one module registered under {p.shared} names is called "
                f"{got} times per forward, so its names cannot be matched to calls; name a "
                "call with '@k' on its first name instead")
        verified.add(p.name)
    missing = [p.name for p in points if p.name not in out]
    if missing:
        raise LayerNameError(f"layers {missing} were not reached in the forward pass "
                             "(named a call that does not happen?)")
    return out


def canonical_names(model: nn.Module, example: torch.Tensor, names: Sequence[str]) -> list[str]:
    """``names`` checked on one forward of ``example`` (B, ...) — every named call happens
    (``relu1@9`` of a module called once raises :class:`LayerNameError`) — and spelled one way
    each, as :func:`list_layers` spells them: ``path`` for a module called once (``relu1@0``
    becomes ``relu1``), ``path@k`` for the k-th call of a module called several times, the
    i-th registered name for the i-th call of a shared module. Two names of one layer point
    (``relu1`` and ``relu1@0``) raise :class:`LayerNameError`; the order is kept."""
    with torch.no_grad():
        capture(model, example, names, stop_early=False)  # unknown, unreached, ambiguous
    counts = _call_counts(model, example)
    names_of: dict[int, list[str]] = {}
    for n, m in _all_paths(model):
        names_of.setdefault(id(m), []).append(n)
    spelled: dict[tuple[int, int], str] = {}  # (module, call) → its one spelling
    for n, m in _all_paths(model):
        c, own = counts.get(id(m), 0), names_of[id(m)]
        if c == len(own):
            spelled[(id(m), own.index(n))] = n
        elif n == own[0]:
            spelled.update({(id(m), k): f"{n}@{k}" for k in range(c)})
    out: dict[str, str] = {}  # spelling → the name given
    for n in names:
        p = resolve(model, n)
        one = spelled.get((id(p.module), p.call or 0), n)
        if one in out:
            raise LayerNameError(f"{out[one]!r} and {n!r} name the same layer ({one!r}): "
                                 "name it once")
        out[one] = n
    return list(out)


def layer_shapes(model: nn.Module, example: torch.Tensor, names: Sequence[str]) -> dict[str, tuple]:
    """Output shape (without batch) of each named layer for ``example`` (B, ...)."""
    with torch.no_grad():
        feats = capture(model, example, names, stop_early=False)
    return {n: tuple(v.shape[1:]) for n, v in feats.items()}


def split(model: nn.Module, name: str,
          example: torch.Tensor | None = None) -> tuple[Callable, Callable]:
    """``(f_pre, f_post)`` with ``f_post(f_pre(x)) == model(x)`` for the named layer.

    ``f_pre(x)`` runs the model up to the layer and stops. ``f_post(l)`` runs the model on
    a placeholder input of the remembered shape and substitutes ``l`` for the layer's
    output, so it is exact when the layer is a cut of the graph (every path from the input
    to the output passes through it); this is checked on first use and a
    :class:`ValueError` names a layer that a skip connection bypasses. Dropout makes
    ``f`` random: use eval mode for the exact identity.
    """
    point = resolve(model, name)
    state: dict = {"shape": None if example is None else tuple(example.shape[1:]),
                   "dtype": None if example is None else example.dtype, "checked": False}

    def f_pre(x: torch.Tensor) -> torch.Tensor:
        state["shape"], state["dtype"] = tuple(x.shape[1:]), x.dtype
        return capture(model, x, [name])[name]

    def _post(l: torch.Tensor, fill: str) -> torch.Tensor:
        calls = {"n": 0}

        def hook(mod, inp, output):
            i = calls["n"]
            calls["n"] += 1
            if point.call is None or point.call == i:
                if output.shape != l.shape:
                    raise ValueError(f"f_post({name}) got shape {tuple(l.shape)}, the layer "
                                     f"gives {tuple(output.shape)}")
                return l

        shape = (l.shape[0], *state["shape"])
        dev = l.device
        dummy = (torch.zeros(shape, dtype=state["dtype"], device=dev) if fill == "zeros"
                 else torch.rand(shape, generator=torch.Generator().manual_seed(0),
                                 dtype=state["dtype"]).to(dev))
        h = point.module.register_forward_hook(hook)
        try:
            return model(dummy)
        finally:
            h.remove()

    def f_post(l: torch.Tensor) -> torch.Tensor:
        if state["shape"] is None:
            raise RuntimeError("f_post needs the input shape: call f_pre first or pass example=")
        out = _post(l, "zeros")
        if not state["checked"]:
            with torch.no_grad():
                other = _post(l.detach(), "rand")
            if not torch.allclose(out.detach(), other, rtol=1e-4, atol=1e-5):
                raise ValueError(
                    f"layer {name!r} is not a cut of {type(model).__name__}: the output also "
                    "depends on the input through a path that bypasses it (a skip connection); "
                    "name the enclosing block instead")
            state["checked"] = True
        return out

    return f_pre, f_post


def default_layers(model: nn.Module) -> list[str]:
    """The model's declared explanation layers (``default_layers``), else its leaf modules
    that are activations or linear/conv layers."""
    declared = getattr(model, "default_layers", None)
    if declared:
        return list(declared)
    kinds = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU)
    leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    act = [n for n, m in leaves if isinstance(m, kinds)]
    last = [n for n, m in leaves if isinstance(m, (nn.Linear, nn.Conv2d))][-1:]
    return act + [n for n in last if n not in act]


def layer_labels(model: nn.Module, names: Sequence[str]) -> list[str]:
    """Short labels for figures: the model's own (``Conv1`` …) for its default layers."""
    declared = list(getattr(model, "default_layers", ()))
    labels = list(getattr(model, "layer_labels", ()))
    out = []
    for n in names:
        if n in declared and len(labels) == len(declared):
            out.append(labels[declared.index(n)])
        else:
            out.append(n)
    return out
