"""The hidden-layer contract: name a layer by module path, tap its output, split ``f``.

A *layer point* is the output of one call of one module. It is named by the module's
path (``"feature_extractor.relu2"``, ``"classifier.fc1"``, ``"layer3.4"``); when a module
is called several times in one forward, ``"path@k"`` names its k-th call (0-based).
A module returning a tuple (``nn.MultiheadAttention``, a transformer block) is named by
element: ``"attn[0]"``, ``"attn@1[0]"``. One module instance registered under several names
(TRADES' SmallCNN uses a single ``ReLU`` everywhere) is resolved by order: its i-th
registered name is its i-th call.

No model code is edited: everything works through forward hooks (:func:`hooked`), which
are always removed, and the model's train/eval mode is never changed. A hook never keeps
a tensor it did not copy: every captured value is cloned the moment its module returns
(inputs: before the module runs), so a later in-place operation (``nn.ReLU(inplace=True)``,
``out += identity``) cannot change it, and :func:`split`'s ``f_post`` substitutes a copy
of its argument, which it never modifies.

>>> list_layers(model)                       # nameable paths
>>> feats = capture(model, x, ["feature_extractor.relu1", "classifier.fc1"])
>>> f_pre, f_post = split(model, "classifier.fc1")
>>> torch.equal(f_post(f_pre(x)), model(x))  # in eval mode
True
"""
from __future__ import annotations

import contextlib
import dataclasses
import re
import weakref
from typing import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn as nn

from ..registry import UnknownNameError


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
    index: int | None = None  # element of the module's tuple output (``path[i]``), or None


@contextlib.contextmanager
def hooked(modules: Iterable[nn.Module], hook: Callable, pre: bool = False) -> Iterator[None]:
    """``hook`` registered as a forward hook (``pre``: a forward pre-hook) on every distinct
    module of ``modules`` for the ``with`` block; always removed, also on error. The one
    place this package hooks a model."""
    handles = []
    try:
        for m in {id(m): m for m in modules}.values():
            handles.append(m.register_forward_pre_hook(hook) if pre else m.register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()


def _tensor_elements(value) -> list[int] | None:
    """None for a tensor; the indices of the tensor elements of a tuple/list; [] otherwise."""
    if isinstance(value, torch.Tensor):
        return None
    if isinstance(value, (tuple, list)):
        return [i for i, v in enumerate(value) if isinstance(v, torch.Tensor)]
    return []


def _element(value, index: int | None, name: str, what: str) -> torch.Tensor:
    """The tensor a layer point names in a module's output (or inputs): ``value`` itself, or
    its ``index``-th element; else one line (:class:`LayerNameError`) naming the form to use."""
    if index is not None:
        if not isinstance(value, (tuple, list)) or index >= len(value):
            size = f" of {len(value)}" if isinstance(value, (tuple, list)) else ""
            got = f"a {type(value).__name__}{size}"
            raise LayerNameError(f"layer {name!r}: its module {what} {got}, which has no element [{index}]")
        value = value[index]
    if isinstance(value, torch.Tensor):
        return value
    idx = _tensor_elements(value)
    if idx:
        raise LayerNameError(f"layer {name!r}: its module {what} a {type(value).__name__}; name one "
                             f"element as " + " or ".join(f"'{name}[{i}]'" for i in idx))
    raise LayerNameError(f"layer {name!r}: its module {what} {type(value).__name__}, not a tensor")


def _all_paths(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules(remove_duplicate=False) if n]


def list_layers(model: nn.Module, example: torch.Tensor | None = None) -> list[str]:
    """Every nameable layer path of ``model``, in registration order.

    With an ``example`` input (B, ...), the forward is traced: modules never called are
    left out, modules called k > 1 times appear as ``path@0`` … ``path@{k-1}``, a module
    returning a tuple as one name per tensor element (``path[0]``, ``path@1[0]``), and a
    module returning no tensor at all (a dict, an object) is left out.
    """
    paths = _all_paths(model)
    if example is None:
        return [n for n, _ in paths]
    counts, kinds = _call_counts(model, example)
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
            bases = [n]
        elif shared == 1:
            bases = [f"{n}@{k}" for k in range(c)]
        else:
            bases = [n]  # shared and called a different number of times: name is ambiguous
        idx = kinds[id(m)]
        out.extend(bases if idx is None else [f"{b}[{i}]" for b in bases for i in idx])
    return out


def _call_counts(model: nn.Module,
                 example: torch.Tensor) -> tuple[dict[int, int], dict[int, list[int] | None]]:
    """Per module (by id): how often one forward of ``example`` calls it, and what its first
    call returns (:func:`_tensor_elements`)."""
    counts: dict[int, int] = {}
    kinds: dict[int, list[int] | None] = {}

    def hook(mod, inp, out):
        counts[id(mod)] = counts.get(id(mod), 0) + 1
        kinds.setdefault(id(mod), _tensor_elements(out))

    with hooked((m for _, m in _all_paths(model)), hook), torch.no_grad():
        model(example)
    return counts, kinds


_NAME = re.compile(r"(?P<base>[^@\[\]]+)(?:@(?P<call>\d+))?(?:\[(?P<index>\d+)\])?")


def resolve(model: nn.Module, name: str) -> LayerPoint:
    """Turn a layer name into a :class:`LayerPoint`, or raise :class:`LayerNameError`."""
    paths = _all_paths(model)
    by_name = dict(paths)
    parsed = _NAME.fullmatch(name)
    if parsed is None or parsed["base"] not in by_name:
        raise LayerNameError(
            f"unknown layer {name!r} for {type(model).__name__}; nameable layers: "
            + ", ".join(n for n, _ in paths) + " (a call: 'path@k'; a tuple element: 'path[i]')")
    base, k = parsed["base"], parsed["call"]
    index = int(parsed["index"]) if parsed["index"] is not None else None
    module = by_name[base]
    names = [n for n, m in paths if m is module]
    if k:
        return LayerPoint(name, module, int(k), len(names), index)
    if len(names) > 1:
        return LayerPoint(name, module, names.index(base), len(names), index)
    return LayerPoint(name, module, None, 1, index)


_VERIFIED: "weakref.WeakKeyDictionary[nn.Module, set[str]]" = weakref.WeakKeyDictionary()


def capture(model: nn.Module, x: torch.Tensor, names: Sequence[str],
            stop_early: bool = True, inputs: bool = False) -> dict[str, torch.Tensor]:
    """Outputs of the named layers for input ``x`` from one forward pass (with ``inputs``:
    the first positional input of each named module's call instead, e.g. what a max-pooling
    layer pools; ``path[i]`` then names its i-th positional input).

    Returns ``{name: tensor (B, ...)}``, differentiable with respect to ``x``: each a copy
    (``clone``) taken when its module returns (inputs: before it runs), so it is the module's
    true output (input) whatever the rest of the forward does in place, and whether or not
    the forward stops early. With ``stop_early`` the forward ends as soon as the last wanted
    tensor is captured (after the first use of a name, whose call count is checked on one
    full forward). The model's mode is left as it is; every hook is removed before returning.
    """
    points = [resolve(model, n) for n in names]
    verified = _VERIFIED.setdefault(model, set())
    unchecked = [p for p in points if p.name not in verified and (p.call is None or p.shared > 1)]
    stop_early = stop_early and not unchecked
    wanted: dict[int, list[LayerPoint]] = {}
    for p in points:
        wanted.setdefault(id(p.module), []).append(p)
    out: dict[str, torch.Tensor] = {}
    calls: dict[int, int] = {}
    what = "takes" if inputs else "returns"

    def hook(mod, inp, *output):  # a pre-hook (inputs) gets no output
        i = calls.get(id(mod), 0)
        calls[id(mod)] = i + 1
        for p in wanted[id(mod)]:
            if (p.call is None and i == 0) or p.call == i:
                if inputs:
                    value = _element(inp, p.index or 0, p.name, what)
                else:
                    value = _element(output[0], p.index, p.name, what)
                out[p.name] = value.clone()  # later in-place ops must not reach it
        if stop_early and len(out) == len(points):
            raise _Stop

    with hooked((p.module for p in points), hook, pre=inputs):
        try:
            model(x)
        except _Stop:
            pass
    _check_calls(unchecked, calls, verified)
    missing = [p.name for p in points if p.name not in out]
    if missing:
        raise LayerNameError(f"layers {missing} were not reached in the forward pass "
                             "(named a call that does not happen?)")
    return out


def _check_calls(points: Sequence[LayerPoint], calls: dict[int, int], verified: set[str]) -> None:
    """After one full forward: each point's name matches its module's calls (else one line,
    :class:`LayerNameError`); the names that do are added to ``verified``."""
    for p in points:
        got = calls.get(id(p.module), 0)
        parsed = _NAME.fullmatch(p.name)
        tail = f"[{p.index}]" if p.index is not None else ""
        if p.call is None and got > 1:
            raise LayerNameError(
                f"layer {p.name!r} is called {got} times per forward: name one call as "
                f"'{parsed['base']}@0{tail}' … '{parsed['base']}@{got - 1}{tail}'")
        if p.shared > 1 and got != p.shared:
            raise LayerNameError(
                f"layer {p.name!r}: one module registered under {p.shared} names is called "
                f"{got} times per forward, so its names cannot be matched to calls; name a "
                "call with '@k' on its first name instead")
        verified.add(p.name)


def canonical_names(model: nn.Module, example: torch.Tensor, names: Sequence[str]) -> list[str]:
    """``names`` checked on one forward of ``example`` (B, ...) — every named call happens
    (``relu1@9`` of a module called once raises :class:`LayerNameError`) — and spelled one way
    each, as :func:`list_layers` spells them: ``path`` for a module called once (``relu1@0``
    becomes ``relu1``), ``path@k`` for the k-th call of a module called several times, the
    i-th registered name for the i-th call of a shared module. Two names of one layer point
    (``relu1`` and ``relu1@0``) raise :class:`LayerNameError`; the order is kept."""
    with torch.no_grad():
        capture(model, example, names, stop_early=False)  # unknown, unreached, ambiguous
    counts, _ = _call_counts(model, example)
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
        if p.index is not None and one != n:  # ``attn@0[1]`` → ``attn[1]``
            one = f"{one}[{p.index}]"
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


def _substituting_hook(point, name: str, l: torch.Tensor) -> Callable:
    """A forward hook for ``point``'s module that replaces the layer's output (at its call and
    tuple element) by a copy of ``l``, for :func:`split`'s ``f_post``."""
    calls = {"n": 0}

    def hook(mod, inp, output):
        i = calls["n"]
        calls["n"] += 1
        if point.call is None or point.call == i:
            now = _element(output, point.index, name, "returns")
            if now.shape != l.shape:
                raise ValueError(f"f_post({name}) got shape {tuple(l.shape)}, the layer "
                                 f"gives {tuple(now.shape)}")
            new = l.clone()  # the rest of the forward may work in place: never on l
            if point.index is None:
                return new
            items = [new if j == point.index else o for j, o in enumerate(output)]
            if isinstance(output, list):
                return items
            return type(output)(*items) if hasattr(output, "_fields") else tuple(items)

    return hook


def split(model: nn.Module, name: str,
          example: torch.Tensor | None = None) -> tuple[Callable, Callable]:
    """``(f_pre, f_post)`` with ``f_post(f_pre(x)) == model(x)`` for the named layer.

    ``f_pre(x)`` runs the model up to the layer and stops. ``f_post(l)`` runs the model on
    a placeholder input of the remembered shape and substitutes a copy of ``l`` for the
    layer's output (for ``path[i]``: for that element of the module's tuple; gradients flow
    to ``l``, which is never modified), so it is exact when the layer is a cut of the graph
    (every path from the input to the output passes through it); this is checked on first
    use and a :class:`ValueError` names a layer that a skip connection bypasses. Dropout
    makes ``f`` random: use eval mode for the exact identity.
    """
    point = resolve(model, name)
    state: dict = {"shape": None if example is None else tuple(example.shape[1:]),
                   "dtype": None if example is None else example.dtype, "checked": False}

    def f_pre(x: torch.Tensor) -> torch.Tensor:
        state["shape"], state["dtype"] = tuple(x.shape[1:]), x.dtype
        return capture(model, x, [name])[name]

    def _post(l: torch.Tensor, fill: str) -> torch.Tensor:
        shape = (l.shape[0], *state["shape"])
        dev = l.device
        dummy = (torch.zeros(shape, dtype=state["dtype"], device=dev) if fill == "zeros"
                 else torch.rand(shape, generator=torch.Generator().manual_seed(0),
                                 dtype=state["dtype"]).to(dev))
        with hooked([point.module], _substituting_hook(point, name, l)):
            return model(dummy)

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
