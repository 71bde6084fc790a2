"""Loading a classifier for any command: a zoo checkpoint, a bare ``state_dict``, or a user's
model file with its weights.

Code runs only from a file typed on the command line (``--model-file FILE.py:FUNCTION``, for a
judge ``--judge-model-file``). A checkpoint saved from a model file (``RUN/user/checkpoints/
final.pt``) records that file's path and the SHA-256 of its content, but never chooses the code
that runs: loading it without the flag is refused in one line naming the flag, and a file whose
content differs from the recorded hash is refused too (the weights would meet another
``forward``).

A model file is imported once per process (cached by resolved path and content hash), from
the very bytes that were hashed. Whatever it does while it is imported or while its function
builds the model — raise, call ``sys.exit``, parse the command line with ``argparse`` — ends in
one :class:`ModelFileError` naming the file and what it did; Ctrl-C stays Ctrl-C.

>>> net = load_model_file("my_model.py:build")
>>> clf = load_model("runs/own/user/checkpoints/final.pt", model_file="my_model.py:build")
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import inspect
import io
import logging
import sys
import types
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn

from .wrappers import select_output, with_normalization
from .zoo import create, fast_layout, input_channels
from ..runtime.runs import load_checkpoint

log = logging.getLogger(__name__)

# (resolved path, SHA-256 of the content) → the imported module: each file imported once
_MODULES: dict[tuple[str, str], types.ModuleType] = {}


class ModelFileError(ValueError):
    """A model file that gives no model, or a checkpoint that needs one the command line lacks."""


def split_spec(spec: str, flag: str = "--model-file") -> tuple[Path, str]:
    """``"path/to/file.py:build"`` → ``(Path, "build")``; one-line errors otherwise."""
    path, _, fn = str(spec).rpartition(":")
    if not path or not fn:
        raise ModelFileError(f"{flag} needs FILE.py:FUNCTION, got {spec!r}")
    if not Path(path).is_file():
        raise ModelFileError(f"{flag} {path}: no such file")
    return Path(path), fn


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@contextlib.contextmanager
def _contained(path: Path, doing: str, flag: str) -> Iterator[None]:
    """Run a model file's code: ``sys.argv`` is just the file (a module-level ``argparse``
    sees no foreign options), its output is held back and replayed if it succeeds; an
    exception or ``SystemExit`` becomes one :class:`ModelFileError` (KeyboardInterrupt passes)."""
    out, err, argv = io.StringIO(), io.StringIO(), sys.argv
    sys.argv = [str(path)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield
    except SystemExit as e:
        said = [line.strip() for line in err.getvalue().splitlines() if line.strip()]
        log.debug("%s printed before exiting:\n%s%s", path, out.getvalue(), err.getvalue())
        raise ModelFileError(
            f"{flag} {path} called sys.exit({e.code!r}) while {doing}"
            + (f" (it printed {said[-1]!r})" if said else "")
            + "; a model file must not end the process: put script code (argparse, sys.exit) "
              "under `if __name__ == \"__main__\":`") from None
    except Exception as e:  # the user's code may raise anything
        log.debug("%s printed before failing:\n%s%s", path, out.getvalue(), err.getvalue())
        raise ModelFileError(f"{flag} {path} failed while {doing}: {type(e).__name__}: "
                             f"{(str(e).strip().splitlines() or [''])[0]}") from e
    finally:
        sys.argv = argv
    sys.stdout.write(out.getvalue())
    sys.stderr.write(err.getvalue())


def import_model_file(path: str | Path, flag: str = "--model-file") -> types.ModuleType:
    """Import the Python file ``path`` once per process (per content: an edited file is
    imported again). The code run is the code hashed: the file is read once."""
    path = Path(path)
    source = path.read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    key = (str(path.resolve()), digest)
    if key in _MODULES:
        return _MODULES[key]
    name = f"interpretgan_model_file_{digest[:16]}"
    spec = importlib.util.spec_from_loader(name, loader=None, origin=str(path))
    mod = importlib.util.module_from_spec(spec)
    mod.__file__ = str(path)
    sys.modules[name] = mod  # dataclasses and pickling look their module up here
    try:
        with _contained(path, "it was imported", flag):
            exec(compile(source, str(path), "exec"), mod.__dict__)  # what an import does
    except BaseException:
        sys.modules.pop(name, None)
        raise
    _MODULES[key] = mod
    return mod


def load_model_file(spec: str, flag: str = "--model-file") -> nn.Module:
    """``"path/to/file.py:build"`` → the module returned by ``build()``. Every way this can
    go wrong (no file, an import error or exit, no such function, a function needing
    arguments, a result that is no ``nn.Module``) raises a one-line :class:`ModelFileError`."""
    path, fn = split_spec(spec, flag)
    mod = import_model_file(path, flag)
    build = getattr(mod, fn, None)
    if not callable(build):
        raise ModelFileError(f"{path} has no function {fn!r}")
    need = [p.name for p in inspect.signature(build).parameters.values()
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if need:
        raise ModelFileError(f"{path}:{fn} needs arguments ({', '.join(need)}); {flag} takes a "
                             f"function that builds the model without any (e.g. def build(): "
                             f"return {fn}(...))")
    with _contained(path, f"{fn}() built the model", flag):
        net = build()
    if not isinstance(net, nn.Module):
        raise ModelFileError(f"{path}:{fn}() returned {type(net).__name__}, not a torch.nn.Module")
    return net


def model_file_record(spec: str) -> dict:
    """What a checkpoint saved from a model file records about it (never used to run code)."""
    path, fn = split_spec(spec)
    return {"model_file": f"{path.resolve()}:{fn}", "model_file_sha256": file_sha256(path)}


def _from_model_file(ck: dict, path: Path, spec: str | None, flag: str) -> nn.Module:
    """The classifier of a checkpoint saved from a model file, built by the file the user
    typed (``spec``), after checking its content against the recorded hash."""
    if spec is None:
        raise ModelFileError(
            f"{path} was saved from the model file {ck['model_file']}; a checkpoint never "
            f"chooses the code that runs: pass {flag} FILE.py:FUNCTION (that file) to load it")
    file, _ = split_spec(spec, flag)
    want = ck.get("model_file_sha256")
    if want is not None and file_sha256(file) != want:
        raise ModelFileError(
            f"{flag} {file} is not the file {path} was saved from ({ck['model_file']}, sha256 "
            f"{want[:12]}…; this one {file_sha256(file)[:12]}…): pass that file, or rerun the "
            "command that saved the checkpoint with this one")
    net = load_model_file(spec, flag)
    load_state_dict_strict(net, ck["state_dict"], str(path))
    if ck.get("output"):  # its logits are read as when it was checked
        select_output(net, ck["output"]["selector"], ck["output"]["auto"])
    if ck.get("normalize"):
        with_normalization(net, ck["normalize"])
    return net


def _bare_state(ck, path: Path) -> dict:
    state = ck.get("state_dict", ck) if isinstance(ck, dict) else ck
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state_dict (a dict of tensors, or one under "
                         "'state_dict'): save it with torch.save(model.state_dict(), path)")
    return state


def load_model(ckpt: str | Path, device: str | torch.device = "cpu", model_file: str | None = None,
             model: str | None = None, flag: str = "--model-file", **model_kwargs) -> nn.Module:
    """Any classifier checkpoint, on ``device``, in eval mode:

    * saved from a model file: built by ``model_file`` (the file the user typed, checked
      against the recorded hash; without it, refused naming ``flag``);
    * a bare ``state_dict`` with ``model_file``: the user's model with these weights;
    * ours or a bare ``state_dict`` with a zoo ``model`` name: :func:`~interpretgan.models.
      classifier_from` (``model_file`` with one of ours is refused: it is a zoo model)."""
    path = Path(ckpt)
    ck = load_checkpoint(path)
    if isinstance(ck, dict) and "model_file" in ck:
        net = _from_model_file(ck, path, model_file, flag)
    elif model_file is not None:
        if isinstance(ck, dict) and "model" in ck and "state_dict" in ck:
            raise ModelFileError(f"{path} holds a zoo {ck['model']}: leave {flag} out")
        net = load_model_file(model_file, flag)
        load_state_dict_strict(net, _bare_state(ck, path), str(path))
    else:
        return classifier_from(ck, path, model, device, **model_kwargs)
    return net.to(device).eval()


load_any = load_model  # the name of 0.1


def model_and_example(checkpoint: str | None = None, model: str = "smallcnn", model_file: str | None = None,
                      input_size: int | None = None, pool: str = "max",
                      channels: int | None = None) -> tuple[nn.Module, torch.Tensor]:
    """A classifier in eval mode and a zero input (1, C, S, S) for reading its layers: from a
    ``checkpoint`` (``input_size``: for a bare ``state_dict`` of a zoo ``model``), else a
    user's ``model_file`` (its shapes do not depend on its weights), else an untrained zoo
    ``model``. ``channels``: the input channels where the model has no Conv2d to tell them."""
    if checkpoint:
        size_kw = {"input_size": input_size} if input_size and not model_file else {}
        net = load_model(checkpoint, model=model, model_file=model_file, **size_kw)
    elif model_file:
        net = load_model_file(model_file)
    else:
        net = create(model, pool=pool, **({"input_size": input_size} if input_size else {}))
    chans = channels or getattr(net, "model_kwargs", {}).get("in_channels") or input_channels(net)
    if chans is None:
        raise ValueError("the model has no Conv2d to tell its input channels: pass --channels")
    size = input_size or getattr(net, "model_kwargs", {}).get("input_size")
    if size is None:  # a model file: the first common side it takes
        size = _accepted_side(net.eval(), chans, PROBE_SIDES)
    return net.eval(), torch.zeros(1, chans, size, size)


PROBE_SIDES = (32, 28)  # CIFAR-10 / the zoo's MNIST side, then MNIST's own


def _accepted_side(net: nn.Module, chans: int, sides: tuple[int, ...]) -> int:
    """The first of ``sides`` whose zero input (1, chans, s, s) ``net`` runs on; else one line
    naming the shapes tried and the flag that sets the side."""
    tried = []
    for side in sides:
        try:
            with torch.no_grad():
                net(torch.zeros(1, chans, side, side))
            return side
        except Exception as e:  # the user's forward may raise anything on a wrong shape
            tried.append(f"{(1, chans, side, side)}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    raise ValueError("your model accepts none of the input shapes tried: " + "; ".join(tried)
                     + "; pass --input-size N (the side it was trained on)")


# --------------------------------------------------------------------------- checkpoints
class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the architecture it is loaded into."""


def load_state_dict_strict(model: nn.Module, state: dict, source: str = "checkpoint") -> None:
    """Load ``state`` (optionally ``module.``-prefixed) or raise a readable error."""
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:4]}{'…' if len(missing) > 4 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:4]}{'…' if len(unexpected) > 4 else ''}")
        if wrong:
            parts.append("shapes " + ", ".join(
                f"{k}: {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong[:3])
                + ("…" if len(wrong) > 3 else ""))
        name = getattr(model, "model_name", type(model).__name__)
        raise CheckpointMismatchError(
            f"{source} does not fit {name} {getattr(model, 'model_kwargs', '')}: " + "; ".join(parts)
        )
    model.load_state_dict(state)


def load_classifier(path: str | Path, model: str | None = None,
                    device: str | torch.device = "cpu", **model_kwargs) -> nn.Module:
    """Load a classifier from one of our checkpoints, or a bare state_dict (e.g. TRADES').

    Our checkpoints describe their model (name + kwargs); for a bare state_dict name the
    model: ``load_classifier("model-nn-epoch100.pt", "smallcnn", input_size=28)``.
    Returns the model in eval mode on ``device`` (on the CPU in :func:`fast_layout`).
    A checkpoint saved from a user's model file needs that file:
    :func:`interpretgan.loading.load_model`.
    """
    return classifier_from(load_checkpoint(path), path, model, device, **model_kwargs)


def classifier_from(ckpt, path: str | Path, model: str | None = None,
                    device: str | torch.device = "cpu", **model_kwargs) -> nn.Module:
    """:func:`load_classifier` for a checkpoint already loaded (``ckpt``) from ``path``."""
    if isinstance(ckpt, dict) and "model_file" in ckpt:
        raise ValueError(f"{path} was saved from the model file {ckpt['model_file']}: pass "
                         "--model-file FILE.py:FUNCTION (that file) to load it")
    if isinstance(ckpt, dict) and "state_dict" in ckpt and "model" in ckpt:
        name = model or ckpt["model"]
        kwargs = {**ckpt.get("model_kwargs", {}), **model_kwargs}
        if model is not None and model.lower() != ckpt["model"]:
            raise CheckpointMismatchError(
                f"{path} holds a {ckpt['model']} {ckpt.get('model_kwargs')}, not a {model}")
        state = ckpt["state_dict"]
    elif isinstance(ckpt, dict) and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        if model is None:
            raise ValueError(f"{path} is a bare state_dict: name its model (e.g. model='smallcnn')")
        name, kwargs, state = model, model_kwargs, ckpt
    else:
        raise ValueError(f"{path} is neither an interpretgan checkpoint nor a state_dict")
    net = create(name, **kwargs)
    load_state_dict_strict(net, state, str(path))
    return fast_layout(net.to(device), device).eval()
