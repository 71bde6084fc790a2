"""Config machinery shared by every part: :func:`merge` sets fields by dotted name, checking
each value against the field's type; :func:`validate` runs the range rules each part
registers with :func:`rules` beside the dataclass it configures; the bounds (``MAX_*``) and
the helpers those rules are written with."""
from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from typing import Any, Callable, Union
import json


OPERATIONAL_FIELDS = frozenset({"checkpoint_every", "checkpoint_every_s"})


def result_config(cfg: Any) -> dict:
    """``dataclasses.asdict(cfg)`` without the :data:`OPERATIONAL_FIELDS` of its top level."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in OPERATIONAL_FIELDS}


class ConfigError(KeyError, ValueError):
    """A setting the config cannot take: an unknown field, a wrong type or a value out of range."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------- types
def _describe(hint: Any) -> str:
    """``int`` → "an integer", ``tuple[int, ...]`` → "a list of integers" …"""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        parts = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        return f"a list of {len(args)} {_plural(args[0])}"
    if origin is dict or hint is dict:
        return "an object (JSON {...})"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string",
            type(None): "null"}.get(hint, getattr(hint, "__name__", str(hint)))


def _plural(hint: Any) -> str:
    return {int: "integers", float: "numbers", str: "strings"}.get(hint, _describe(hint))


class _Mismatch(Exception):
    pass


# The scalar types a value must already have (a bool is no int here).
_EXACT = {bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str)}


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as type ``hint`` (an int for a float field becomes a float, a list for a
    tuple field a tuple); raises :class:`_Mismatch` where it does not fit."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is not type(None):
                try:
                    return _coerce(value, a)
                except _Mismatch:
                    pass
        raise _Mismatch
    if hint in _EXACT:
        if _EXACT[hint](value):
            return value
        raise _Mismatch
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise _Mismatch
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise _Mismatch
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0]) for v in value)
        if len(value) != len(args):
            raise _Mismatch
        return tuple(_coerce(v, a) for v, a in zip(value, args))
    if origin is dict or hint is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise _Mismatch
        if len(args) == 2:
            return {k: _coerce(v, args[1]) for k, v in value.items()}
        return dict(value)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        raise _Mismatch
    return value  # a type this checker does not know: left to the code that uses it


def check_type(value: Any, hint: Any, name: str) -> Any:
    """``value`` converted to the field type ``hint``, or a :class:`ConfigError` such as
    ``fit.batch_size must be an integer, got 'abc'``."""
    try:
        return _coerce(value, hint)
    except _Mismatch:
        raise ConfigError(f"{name} must be {_describe(hint)}, got {value!r}") from None


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def merge(base: Any, overrides: dict[str, Any], prefix: str = "") -> Any:
    """Return a copy of dataclass ``base`` with (possibly nested, dotted) overrides applied.

    Each value is checked against its field's type (:func:`check_type`); an unknown field
    or a wrong type raises :class:`ConfigError` naming ``prefix`` + the field."""
    changes: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    names = {f.name for f in dataclasses.fields(base)}
    hints = _hints(type(base))
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if head not in names:
            raise ConfigError(f"unknown setting {prefix}{key}: {type(base).__name__} has no field "
                              f"{head!r}; fields: " + ", ".join(sorted(names)))
        if dataclasses.is_dataclass(getattr(base, head)):
            if rest:
                nested.setdefault(head, {})[rest] = value
            elif isinstance(value, dict):
                nested.setdefault(head, {}).update(value)
            else:
                changes[head] = check_type(value, hints[head], prefix + head)
        elif rest:
            raise ConfigError(f"unknown setting {prefix}{key}: {prefix}{head} has no fields")
        else:
            changes[head] = check_type(value, hints[head], prefix + head)
    for head, sub in nested.items():
        changes[head] = merge(getattr(base, head), sub, f"{prefix}{head}.")
    return dataclasses.replace(base, **changes)


# --------------------------------------------------------------------------- validation
_RULES: dict[type, Callable[[Any, str], None]] = {}


def rules(cls: type) -> Callable:
    """Register the range rules of config class ``cls`` (``fn(cfg, prefix)``, raising
    :class:`ConfigError`); :func:`validate` runs them after the type checks."""
    def add(fn):
        _RULES[cls] = fn
        return fn
    return add


# Every integer setting is at most this (seeds are 32-bit; no count or size needs more), so a
# typo cannot overflow a C integer or ask for an allocation later; many fields have tighter
# bounds in their rules (epochs, batch sizes, generator seeds …).
MAX_INT = 2**32 - 1
MAX_EPOCHS = 100_000
MAX_BATCH = 65_536
MAX_GENERATOR_SEEDS = 100  # generators fitted per layer (each a full G/D pair)
MAX_EXPLAIN_IMAGES = 1_000  # rows of an explanation grid


def _bounded(value: Any, name: str) -> None:
    """Every integer in ``value`` (an int, or a list of them) is at most :data:`MAX_INT`."""
    items = value if isinstance(value, (tuple, list)) else (value,)
    for v in items:
        if isinstance(v, int) and not isinstance(v, bool) and v > MAX_INT:
            raise ConfigError(f"{name} must be at most {MAX_INT} (2**32 - 1), got {v}")


def validate(cfg: Any, prefix: str = "") -> Any:
    """Check every field of config dataclass ``cfg`` (and its nested configs): its type, its
    range (every integer at most :data:`MAX_INT`) and the names it refers to. Returns
    ``cfg``; raises :class:`ConfigError` with one line naming ``prefix`` + the field."""
    hints = _hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            validate(value, f"{prefix}{f.name}.")
        else:
            _bounded(check_type(value, hints[f.name], prefix + f.name), prefix + f.name)
    rule = _RULES.get(type(cfg))
    if rule is not None:
        rule(cfg, prefix)
    return cfg


def need(ok: bool, name: str, what: str, value: Any) -> None:
    """Raise ``ConfigError("{name} must be {what}, got {value!r}")`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{name} must be {what}, got {value!r}")


def at_least(cfg: Any, prefix: str, lo: float, *fields: str, optional: bool = False) -> None:
    """Each of ``fields`` ≥ ``lo`` (or ``None`` when ``optional``)."""
    for f in fields:
        v = getattr(cfg, f)
        if v is None and optional:
            continue
        need(v >= lo, prefix + f, f"at least {lo}" + (" (or null)" if optional else ""), v)


def at_most(cfg: Any, prefix: str, hi: float, *fields: str) -> None:
    """Each of ``fields`` (a number, a list of numbers, or None) ≤ ``hi``."""
    for f in fields:
        v = getattr(cfg, f)
        for x in (v if isinstance(v, (tuple, list)) else (v,)):
            need(x is None or x <= hi, prefix + f, f"at most {hi:,}", v)


def positive(cfg: Any, prefix: str, *fields: str) -> None:
    for f in fields:
        v = getattr(cfg, f)
        need(v > 0, prefix + f, "greater than 0", v)


def fraction(cfg: Any, prefix: str, *fields: str, open_top: bool = False) -> None:
    """Each of ``fields`` in [0, 1] ([0, 1) with ``open_top``)."""
    for f in fields:
        v = getattr(cfg, f)
        need(0 <= v < 1 if open_top else 0 <= v <= 1, prefix + f,
             "in [0, 1)" if open_top else "in [0, 1]", v)


def known(name: str, value: Any, registry) -> None:
    """``value`` is a name in ``registry`` (a :class:`~interpretgan.registry.Registry`)."""
    if value not in registry:
        raise ConfigError(f"{name}: unknown {registry.kind} {value!r}; known: "
                          + ", ".join(registry.names()))


def one_of(name: str, value: Any, choices: typing.Iterable) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")


def override(cfg: Any, **overrides: Any) -> Any:
    """``override(cfg, epochs=3, **{"data.train_subset": 1000})``; ``None`` values are ignored
    (unset command-line options). Use :func:`merge` to set a field to ``None``."""
    return merge(cfg, {k: v for k, v in overrides.items() if v is not None})


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``["batch_size=32", "g_channels=[32,16]", "gan_loss=wgan-gp"]`` → a dict for :func:`merge`;
    values are JSON when they parse as JSON (lists become tuples), else strings. NaN and
    infinities are kept as strings (so a number field rejects them)."""

    def no_constants(name: str) -> Any:
        raise ValueError(name)

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected KEY=VALUE, got {item!r}")
        try:
            value = json.loads(raw, parse_constant=no_constants)
        except ValueError:  # not JSON (json.JSONDecodeError is a ValueError): a string
            value = raw
        out[key.strip()] = tuple(value) if isinstance(value, list) else value
    return out


def from_dict(cls: type, d: dict[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from ``dataclasses.asdict`` output."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        ftype = f.type if not isinstance(f.type, str) else eval_type(cls, f.name)
        if dataclasses.is_dataclass(ftype) and isinstance(v, dict):
            v = from_dict(ftype, v)
        elif isinstance(v, list) and "tuple" in str(f.type):
            v = tuple(v)
        kwargs[f.name] = v
    return cls(**kwargs)


def same_config(saved: dict, cfg: Any) -> bool:
    """Whether a config saved as a dict equals ``cfg``, reading fields added since it was
    saved at their defaults (so adding an option does not invalidate old checkpoints)."""
    try:
        return result_config(from_dict(type(cfg), saved)) == result_config(cfg)
    except (TypeError, KeyError):
        return False


def eval_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def physical_memory() -> int | None:
    """This machine's memory in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_image_memory(image_size: int, batch_size: int, name: str) -> None:
    """Refuse (one-line :class:`ConfigError`) an image size at which one batch of
    ``batch_size`` RGB images alone, as float32 (B, 3, S, S), would exceed this machine's
    memory: a lower bound on what the work needs, checked before any of it."""
    need_bytes = batch_size * 3 * image_size * image_size * 4
    mem = physical_memory()
    if mem is not None and need_bytes > mem:
        raise ConfigError(f"{name} {image_size} px: one batch of {batch_size} images takes "
                          f"{need_bytes / 2 ** 30:,.0f} GiB as float32, more than this machine's "
                          f"{mem / 2 ** 30:,.0f} GiB of memory; use a smaller --image-size")
