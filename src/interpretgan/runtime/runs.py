"""Run folders, atomic writes and self-describing checkpoints.

Every command writes into one run directory::

    RUN/
      config.json          the resolved config the run used
      metrics.jsonl        one JSON object per epoch / stage
      metrics.json         the final summary
      checkpoints/last.pt  latest resumable state (atomic)
      checkpoints/final.pt the finished model
      .lock                held while a process writes into the folder (:class:`RunLock`)

Every file is written through a temp file ``.NAME.XXXXXXXX.tmp`` in the same folder, fsynced,
renamed over ``NAME`` and its folder fsynced, so a kill or power cut leaves either the old or
the new file; :func:`sweep_temp` removes the temp files a kill leaves behind. Checkpoints hold
only tensors and plain data and are loaded with ``torch.load(weights_only=True)``: loading one
never runs code from the file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import pickle
import random
import re
import socket
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


class UnsafeCheckpointError(ValueError):
    """A checkpoint needs more than tensors and plain data to load (it could run code)."""


class RunLockedError(ValueError):
    """Another live process holds the run folder's lock."""


class NonFiniteError(ValueError):
    """A loss, output or value to be written is NaN or infinite."""


def _file_mode() -> int:
    """``0o666`` less the process umask: the mode ``open()`` would give a new file."""
    try:  # Linux reports the umask without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder, so a rename inside it survives a power cut (no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a folder
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(file)`` on a temp file next to ``path``, fsync it, give it the usual mode,
    rename it over ``path`` and fsync the folder. The temp file is removed on any error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                write(f, tmp)
                f.flush()
                os.fsync(f.fileno())
        except RuntimeError as e:  # torch.save reports a failed write as a RuntimeError
            cause = _os_error_in(e)
            if cause is None:
                raise
            raise OSError(cause.errno, cause.strerror, str(path)) from None
        except OSError as e:
            if e.errno is None or e.filename:
                raise
            raise OSError(e.errno, e.strerror, str(path)) from None  # (name the file written)
        os.chmod(tmp, _file_mode())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def _os_error_in(e: BaseException) -> OSError | None:
    """The OSError (a full disk, a quota) behind an exception, through its causes/contexts."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError) and e.errno is not None:
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Write ``path`` atomically and durably: ``write(file, temp_path)`` fills a temp file next
    to it (an exception there leaves ``path`` as it was), which is then fsynced and renamed."""
    return _atomic_write(path, write)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably (temp file, fsync, rename, fsync)."""
    return _atomic_write(path, lambda f, tmp: f.write(data))


# mkstemp's names: "." + target name + "." + 8 characters + ".tmp"
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def sweep_temp(root: str | os.PathLike) -> list[Path]:
    """Remove the temp files (``.NAME.XXXXXXXX.tmp``) a killed process left under ``root``
    (recursively); returns them. Call it only while holding ``root``'s :class:`RunLock`."""
    root = Path(root)
    if not root.is_dir():
        return []
    removed = []
    for p in root.rglob(".*.tmp"):
        if p.is_file() and _TEMP_NAME.match(p.name):
            try:
                p.unlink()
            except FileNotFoundError:
                continue
            removed.append(p)
    if removed:
        log.info("removed %d stale temp file(s) under %s", len(removed), root)
    return removed


def check_finite(value: Any, what: str) -> None:
    """Raise :class:`NonFiniteError` naming ``what`` if ``value`` (a tensor or number) holds
    a NaN or infinity. One host sync for a tensor on a GPU."""
    if isinstance(value, torch.Tensor):
        ok = bool(torch.isfinite(value).all()) if value.is_floating_point() or value.is_complex() else True
    else:
        ok = math.isfinite(value)
    if not ok:
        raise NonFiniteError(f"{what} is not finite (NaN or infinity)")


def _non_finite_path(obj: Any, path: str = "") -> str | None:
    """The key path (``a.b[2]``) of the first NaN/infinity in a JSON-like object."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (path or "<top>")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        for k, v in obj.items():
            hit = _non_finite_path(v, f"{path}.{k}" if path else str(k))
            if hit:
                return hit
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            hit = _non_finite_path(v, f"{path}[{i}]")
            if hit:
                return hit
    elif isinstance(obj, torch.Tensor) and obj.is_floating_point() and not torch.isfinite(obj).all():
        return path or "<top>"
    elif isinstance(obj, np.floating) and not np.isfinite(obj):
        return path or "<top>"
    return None


def _json_default(o: Any) -> Any:
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"cannot serialise {type(o).__name__} to JSON")


def to_json(obj: Any, allow_nan: bool = True) -> str:
    """Pretty JSON; with ``allow_nan=False`` a NaN/infinity raises :class:`NonFiniteError`."""
    try:
        return json.dumps(obj, indent=2, default=_json_default, sort_keys=False, allow_nan=allow_nan)
    except ValueError as e:
        if "JSON compliant" not in str(e):
            raise
        raise NonFiniteError(f"NaN or infinity at {_non_finite_path(obj)}") from None


def write_json(path: str | os.PathLike, obj: Any, allow_nan: bool = False) -> Path:
    """Atomically write ``obj`` as pretty, strict JSON: a NaN or infinity raises
    :class:`NonFiniteError` naming the file and the key (``JSON.parse`` rejects them)."""
    try:
        text = to_json(obj, allow_nan=allow_nan)
    except NonFiniteError as e:
        raise NonFiniteError(f"refusing to write {path}: {e}") from None
    return atomic_write_bytes(path, (text + "\n").encode())


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def append_jsonl(path: str | os.PathLike, obj: Any) -> None:
    """Append one strict JSON line (flushed) — a crash loses at most the line being written.
    A NaN or infinity raises :class:`NonFiniteError` naming the file and the key."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        line = json.dumps(obj, default=_json_default, allow_nan=False)
    except ValueError as e:
        if "JSON compliant" not in str(e):
            raise
        raise NonFiniteError(f"refusing to write {path}: NaN or infinity at "
                             f"{_non_finite_path(obj)}") from None
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a torn last line after a kill
            log.warning("skipping an unreadable line in %s", path)
    return rows


def unsafe_globals(path: str | os.PathLike) -> list[str]:
    """The globals a ``torch.save`` file needs beyond tensors and plain data (read from its
    pickle opcodes; nothing is executed). Empty for a file that loads with weights_only."""
    return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Atomically and durably ``torch.save`` a checkpoint dict (temp file, fsync, rename,
    fsync of the folder). ``state`` must hold only tensors and plain data (dict, list,
    tuple, str, int, float, bool, None), so that :func:`load_checkpoint` can read it;
    anything else raises :class:`UnsafeCheckpointError` and leaves ``path`` untouched."""
    path = Path(path)

    def write(f, tmp):
        torch.save(state, f)
        f.flush()
        bad = unsafe_globals(tmp)
        if bad:
            raise UnsafeCheckpointError(
                f"not saving {path}: it would need {', '.join(bad)} to load; checkpoints hold "
                "only tensors and plain data")

    return _atomic_write(path, write)


_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


# safetensors: 8-byte little-endian header length, a JSON header {name: {dtype, shape,
# data_offsets}, "__metadata__": {...}}, then the tensors' bytes (offsets into that part)
_SAFETENSORS_DTYPES = {
    "BOOL": torch.bool, "U8": torch.uint8, "I8": torch.int8, "I16": torch.int16,
    "U16": torch.uint16, "I32": torch.int32, "U32": torch.uint32, "I64": torch.int64,
    "U64": torch.uint64, "F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32,
    "F64": torch.float64, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}
_MAX_SAFETENSORS_HEADER = 100 << 20  # the format's own limit


def is_safetensors(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts like a safetensors file (whatever its name)."""
    with open(path, "rb") as f:
        head = f.read(9)
    n = int.from_bytes(head[:8], "little") if len(head) == 9 else 0
    return head[8:9] == b"{" and 2 <= n <= min(_MAX_SAFETENSORS_HEADER, os.path.getsize(path) - 8)


def _safetensors_tensor(data: memoryview, entry: dict) -> torch.Tensor:
    dtype = _SAFETENSORS_DTYPES.get(entry.get("dtype"))
    start, end = entry["data_offsets"]
    shape = [int(d) for d in entry["shape"]]
    if dtype is None:
        raise ValueError(f"unknown dtype {entry.get('dtype')!r}")
    if not 0 <= start <= end <= len(data) or end - start != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"data_offsets {[start, end]} do not fit {entry['dtype']} {shape}")
    if end == start:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(data[start:end]), dtype=dtype).reshape(shape)


def load_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A safetensors file as a bare state_dict ``{name: tensor}`` on the CPU (its
    ``__metadata__`` is not needed). Parsing it runs no code; a damaged file raises a
    one-line ``ValueError`` naming it."""
    raw = memoryview(Path(path).read_bytes())
    try:
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(bytes(raw[8:8 + n]))
        data = raw[8 + n:]
        return {k: _safetensors_tensor(data, v) for k, v in header.items() if k != "__metadata__"}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path} is a damaged safetensors file ({type(e).__name__}: {e})") from None


def load_checkpoint(path: str | os.PathLike) -> Any:
    """Load a checkpoint with ``torch.load(weights_only=True)`` onto the CPU: only tensors
    and plain data, so a file cannot run code while it loads. A safetensors file (recognised
    by its header, whatever its name) loads as a bare state_dict (:func:`load_safetensors`).
    A file that needs more raises :class:`UnsafeCheckpointError` (one line naming the file and
    what it needs); a damaged file raises ``ValueError``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_file() and is_safetensors(path):
        return load_safetensors(path)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "Weights only load failed" not in msg:
            raise ValueError(f"{path} is not a readable checkpoint ({msg.splitlines()[0]})") from None
        m = _GLOBAL.search(msg)
        need = f"the Python global {m[1]}" if m else "pickle features beyond plain data"
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it needs {need}, and interpretgan loads only tensors and "
            "plain data (torch.load weights_only=True); save the model's state_dict instead") from None
    except (RuntimeError, EOFError) as e:
        first = (str(e).splitlines() or [""])[0].split(". ")[0] or type(e).__name__
        raise ValueError(f"{path} is not a readable checkpoint ({first})") from None


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Python's, NumPy's and torch's global RNG states (the GPUs' too, once CUDA is in use)
    as tensors and plain data (so a resume file loads with weights_only);
    :func:`set_rng_state` restores them exactly."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss},
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
    }


def set_rng_state(state: dict) -> None:
    py, nps = state["python"], state["numpy"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    np.random.set_state((nps["kind"], nps["keys"].numpy().astype(np.uint32), nps["pos"],
                         nps["has_gauss"], nps["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    gpus = state.get("cuda")  # (resumed on another number of GPUs, or on none: theirs stay)
    if gpus and torch.cuda.is_available() and len(gpus) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(gpus)


class RunDir:
    """The fixed layout of one run folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    config = property(lambda self: self.root / "config.json")
    metrics_jsonl = property(lambda self: self.root / "metrics.jsonl")
    metrics = property(lambda self: self.root / "metrics.json")
    checkpoints = property(lambda self: self.root / "checkpoints")
    last = property(lambda self: self.root / "checkpoints" / "last.pt")
    final = property(lambda self: self.root / "checkpoints" / "final.pt")

    def mkdir(self) -> "RunDir":
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        return self

    def __truediv__(self, other: str) -> Path:
        return self.root / other

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"


# --------------------------------------------------------------------------- output manifests
def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files_under(paths, root: Path) -> dict[str, Path]:
    """``{name relative to root: path}`` of every file in ``paths`` (files or folders,
    recursively), without lock and temp files."""
    out = {}
    for p in paths:
        p = Path(p)
        found = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else []
        for q in found:
            if q.name != ".lock" and not _TEMP_NAME.match(q.name):
                out[q.relative_to(root).as_posix() if q.is_relative_to(root) else str(q)] = q
    return out


def manifest(paths, root: str | os.PathLike) -> dict[str, list]:
    """``{file relative to root: [size, mtime_ns, sha256]}`` of every file under ``paths``:
    what a stage wrote, recorded with its stage record (:func:`manifest_mismatch` checks it)."""
    out = {}
    for name, q in _files_under(paths, Path(root)).items():
        st = q.stat()
        out[name] = [st.st_size, st.st_mtime_ns, sha256_file(q)]
    return out


def manifest_mismatch(recorded: dict[str, list], paths, root: str | os.PathLike,
                      full: bool = False) -> tuple[str | None, dict[str, list]]:
    """Check the files under ``paths`` against a :func:`manifest`. Returns (the first
    difference, in words naming the file, or None; the manifest with refreshed mtimes).

    Cheap by default: a file of the recorded size and mtime is trusted; one whose mtime
    changed (a copy, a touch) is hashed and trusted if its content is the same. ``full``:
    every file is hashed (``run --verify-outputs``). A missing, extra, resized or changed file
    is a difference."""
    root = Path(root)
    now = _files_under(paths, root)
    fresh = {}
    for name in sorted(set(recorded) | set(now)):
        if name not in now:
            return f"{name} is missing", recorded
        if name not in recorded:
            return f"{name} was not written by it", recorded
        size, mtime, digest = recorded[name]
        st = now[name].stat()
        if st.st_size != size:
            return f"{name} has changed (size {st.st_size}, recorded {size})", recorded
        if (full or st.st_mtime_ns != mtime) and sha256_file(now[name]) != digest:
            return f"{name} has changed (content differs from the one recorded)", recorded
        fresh[name] = [size, st.st_mtime_ns, digest]
    return None, fresh


# --------------------------------------------------------------------------- run-folder lock
_HELD: dict[Path, int] = {}  # lock files this process holds → nesting depth


def _boot_id() -> str | None:
    """This boot's id (Linux): a lock written before a reboot is stale whatever its PID."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OSError:
        return True
    return True


class RunLock:
    """``with RunLock(root):`` — hold ``root/.lock`` while writing into a run folder.

    The lock file is created with ``O_EXCL`` and holds the owner's PID, host name and start
    time. A second process raises :class:`RunLockedError` naming the holder; a lock left by
    a process that is gone (same host, PID not running) is taken over with a warning. The
    lock is re-entrant within one process (nested ``RunLock`` on the same folder is a no-op)
    and released on exit, also on an exception or Ctrl-C. A lock covers the folders inside
    its folder: another process's live lock on a folder above ``root`` or on one of its
    sub-folders (two levels down) refuses the lock too (:func:`check_free`).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.path = self.root / ".lock"

    def _key(self) -> Path:
        return self.path.resolve()

    def __enter__(self) -> "RunLock":
        self.root.mkdir(parents=True, exist_ok=True)
        key = self._key()
        if _HELD.get(key):
            _HELD[key] += 1
            return self
        me = {"pid": os.getpid(), "host": socket.gethostname(), "boot": _boot_id(),
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                self._take_over_if_stale(me)
                continue
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me) + "\n")
                f.flush()
                os.fsync(f.fileno())
            fsync_dir(self.root)
            _HELD[key] = 1
            try:
                check_free(self.root)  # a run folder around this one, a command inside it
            except RunLockedError:
                self.__exit__()
                raise
            return self
        raise RunLockedError(f"could not take the lock {self.path}; remove it if no process is "
                             "using the run folder")

    def _holder(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):  # torn or foreign content: treat as unknown holder
            return {"pid": None}

    def _take_over_if_stale(self, me: dict) -> None:
        holder = self._holder()
        if not holder:  # released in the meantime
            return
        pid, host = holder.get("pid"), holder.get("host")
        if not isinstance(pid, int):  # empty or torn (a power cut right after creating it)
            try:
                stale = time.time() - self.path.stat().st_mtime > 30
            except FileNotFoundError:
                return
            if stale:
                log.warning("taking over %s: it names no process", self.path)
                self.path.unlink(missing_ok=True)
                return
        elif host == me["host"] and (not _pid_alive(pid) or pid == me["pid"] or (
                holder.get("boot") and me["boot"] and holder["boot"] != me["boot"])):
            # (our own PID on a lock we do not hold: a dead process's, whose PID came back)
            log.warning("taking over %s: its process %d is gone", self.path, pid)
            self.path.unlink(missing_ok=True)
            return
        raise RunLockedError(_busy(self.path, holder))

    def __exit__(self, *exc) -> None:
        key = self._key()
        _HELD[key] -= 1
        if _HELD[key] > 0:
            return
        del _HELD[key]
        if self._holder().get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)

    @staticmethod
    def held() -> list[Path]:
        """The lock files this process holds."""
        return sorted(_HELD)


def _busy(lock: Path, holder: dict) -> str:
    where = f"on {holder['host']}, " if holder.get("host") not in (None, socket.gethostname()) else ""
    since = f"since {holder['since']}" if holder.get("since") else "start unknown"
    return (f"run folder {lock.parent} is in use by PID {holder.get('pid')} ({where}{since}); "
            f"wait for it or remove {lock} if that process is gone")


def _live_holder(lock: Path) -> dict | None:
    """The holder named in lock file ``lock`` if it is another process that may be alive
    (same host and boot: its PID runs; another host: unknown, so yes); else None (no file,
    a lock this process holds, a dead process's, a file in another format)."""
    if lock.resolve() in _HELD:
        return None
    try:
        holder = json.loads(lock.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int):
        return None
    if holder.get("host") == socket.gethostname():
        boot = _boot_id()
        if (holder["pid"] == os.getpid() or not _pid_alive(holder["pid"])
                or (holder.get("boot") and boot and holder["boot"] != boot)):
            return None
    return holder


def _locks_around(root: Path, depth: int = 2):
    """The lock files that cover ``root``: its own, its ancestors', and its sub-folders' down
    to ``depth`` levels (hidden folders skipped)."""
    root = root.resolve()
    yield root / ".lock"
    for p in root.parents:
        yield p / ".lock"
    level = [root]
    for _ in range(depth):
        below = []
        for d in level:
            try:
                below += [Path(e.path) for e in os.scandir(d)
                          if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]
            except OSError:
                continue
        yield from (d / ".lock" for d in below)
        level = below


def check_free(root: str | os.PathLike) -> None:
    """Raise :class:`RunLockedError` (one line naming the holder) if another live process
    holds a lock on ``root``, on a folder above it (a run folder ``root`` is inside) or on a
    sub-folder of it; call it before any work aimed at ``root``."""
    for lock in _locks_around(Path(root)):
        holder = _live_holder(lock) if lock.is_file() else None
        if holder is not None:
            raise RunLockedError(_busy(lock, holder))
