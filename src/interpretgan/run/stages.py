"""The main job's stages and their cache: a record per stage (its inputs' key, a manifest of
the outputs it wrote), :data:`STAGE_VERSIONS`, and the refusal to write inside a run's folders."""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable


from ..runtime.runs import (NonFiniteError, fsync_dir, manifest, manifest_mismatch, read_json,
                            to_json, write_json)

log = logging.getLogger(__name__)


# Bumped when a stage's code changes its results: part of the stage's key, so run folders
# written by older code redo that stage instead of reusing outputs it would now compute
# differently (or could not read).
STAGE_VERSIONS = {"train": 1, "dstar": 1, "fit": 2, "diagnose": 6, "explain": 2}


def _key(obj) -> str:
    return hashlib.sha256(to_json(obj).encode()).hexdigest()[:16]


def read_record(path: Path, fields: dict[str, type | tuple[type, ...]], fix: str,
                optional: dict[str, type | tuple[type, ...]] | None = None) -> dict:
    """A JSON object the run folder keeps for itself (a stage record, ``wall_time.json``),
    with ``fields`` (and, where present, ``optional`` fields) of their types; a damaged or
    foreign file raises a one-line ``ValueError`` naming it and ``fix`` (what to do)."""
    try:
        doc = read_json(path)
    except (ValueError, UnicodeDecodeError) as e:  # empty, torn, not JSON
        why = f"not JSON: {' '.join(str(e).split())}" if path.stat().st_size else "empty"
        raise ValueError(f"{path} is damaged ({why}); {fix}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is damaged (not a JSON object); {fix}")
    bad = [f for f, t in fields.items() if not _of_type(doc.get(f), t)]
    bad += [f for f, t in (optional or {}).items() if f in doc and not _of_type(doc[f], t)]
    if bad:
        raise ValueError(f"{path} is damaged ({', '.join(bad)} missing or of the wrong type); {fix}")
    return doc


def _of_type(value, types: type | tuple[type, ...]) -> bool:
    """``isinstance``, where true and false are no numbers."""
    types = types if isinstance(types, tuple) else (types,)
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))


_RECORD = {"key": str, "done": bool}


_RECORD_OPTIONAL = {"seconds": (int, float)}


def _stage_fix(name: str) -> str:
    return f"delete it and rerun the same command to redo stage {name}"


class Stages:
    """Runs named stages once per input key; records timings in ``stages/<name>.json``.

    A finished stage's record holds the manifest of what it wrote (size, mtime, SHA-256 of
    every file): a stage is cached only while its outputs are those files. Checked cheaply on
    every run (a file of the recorded size and mtime is trusted, one whose mtime changed is
    hashed), by content with ``verify``. A difference (a file missing, added, resized or
    changed by another command) redoes the stage from scratch, and its downstream stages through
    their keys. A record without a manifest (run folders from before) is trusted as far as its
    outputs exist and given one."""

    def __init__(self, root: Path, on_stage_end: Callable[[], object] | None = None,
                 verify: bool = False):
        self.root = root
        self.dir = root / "stages"
        self.on_stage_end = on_stage_end  # called after every stage that ran (e.g. a clock)
        self.verify = verify  # hash every recorded output, not only those whose mtime changed
        self.dir.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = {}
        self.ran: list[str] = []

    def _path(self, name: str) -> Path:
        return self.dir / (name.replace(":", "__") + ".json")

    def record(self, name: str) -> dict | None:
        """Stage ``name``'s record; None if it never ran (a damaged one: a ``ValueError``
        that names it)."""
        path = self._path(name)
        return (read_record(path, _RECORD, _stage_fix(name), _RECORD_OPTIONAL) if path.exists()
                else None)

    def key(self, name: str) -> str | None:
        """The key of what stage ``name`` last ran (or is running) with — its inputs, and how
        often it was redone over outputs it did not write; None if it never ran."""
        rec = self.record(name)
        return None if rec is None else _outputs_key(rec)

    def run(self, name: str, inputs, outputs: list[Path], fn: Callable[[], object],
            clean: list[Path] = (), recorded: list[Path] | None = None) -> str:
        """Run ``fn`` unless stage ``name`` finished with the same ``inputs`` and its outputs are
        still the files it recorded. Returns the key that stands for its outputs.

        ``outputs``: files that must exist; ``recorded``: the files and folders whose every
        file goes into the stage's manifest (default: ``outputs`` and ``clean``).
        When the inputs of a finished stage changed, its ``clean`` paths (the outputs the stage
        rebuilds as a whole: a classifier's folder, the generators) are moved aside and deleted
        only once ``fn`` has finished. If ``fn`` raises, they are put back with the old record,
        so a failed change leaves the finished stage as it was. A kill (or Ctrl-C) leaves them
        aside: the same command resumes the change, the old command gets them back. Outputs
        written in place (D*, the diagnosis) are replaced atomically when the stage finishes.
        """
        key = _key([STAGE_VERSIONS.get(name.partition(":")[0], 1), inputs])
        files = list(recorded) if recorded is not None else [*outputs, *clean]
        rec = self.record(name)
        if rec and rec.get("discard"):  # a finished change killed while deleting the old outputs
            _remove(rec.pop("discard"))
            write_json(self._path(name), rec)
        if rec and rec.get("aside") and rec.get("aside_key") == key:  # back to the old inputs
            log.info("stage %s: restoring the outputs of its earlier inputs", name)
            self._restore(name, rec, clean)
            rec = self.record(name)
        if rec and rec.get("key") == key and rec.get("done") and all(p.exists() for p in outputs):
            foreign = self._foreign(name, rec, files)
            if foreign is None:
                self.timings[name] = rec.get("seconds", 0.0)
                log.info("stage %s: cached", name)
                return _outputs_key(rec)
            log.warning("stage %s: %s since it ran; redoing it", name, foreign)
            rec = {"key": key, "done": False, "seconds": 0.0, "generation": rec.get("generation", 0) + 1}
            write_json(self._path(name), rec)  # the plan first, then the removal
            _remove([*clean, *files])
        record, started_change = self._plan(name, rec, key, clean)
        t0 = time.perf_counter()
        log.info("stage %s: running", name)
        try:
            fn()
        except Exception as e:
            if started_change:  # this command's change failed: the finished stage comes back
                log.info("stage %s failed: its earlier outputs are back in place", name)
                self._restore(name, record, clean)
            if isinstance(e, NonFiniteError):
                raise NonFiniteError(f"stage {name}: {e}") from None
            raise
        seconds = record.get("seconds", 0.0) + time.perf_counter() - t0
        done = {"key": key, "done": True, "seconds": seconds,
                **{k: record[k] for k in ("generation",) if k in record},
                "outputs": manifest(files, self.root)}
        if record.get("aside"):
            write_json(self._path(name), {**done, "discard": record["aside"]})
            _remove(record["aside"])
        write_json(self._path(name), done)
        self.timings[name] = seconds
        self.ran.append(name)
        if self.on_stage_end is not None:
            self.on_stage_end()
        return _outputs_key(done)

    def _plan(self, name: str, rec: dict | None, key: str, clean: list[Path]) -> tuple[dict, bool]:
        """The record of a stage about to run (written, and its moves aside carried out), and
        whether this command started a change of a finished stage."""
        started_change = False
        if rec and rec.get("key") == key:  # resuming this very stage (perhaps a change)
            record = rec
        else:
            record = {"key": key, "done": False, "seconds": 0.0}
            if rec:
                log.info("stage %s: inputs changed, redoing it", name)
            if rec and rec.get("aside"):  # an earlier change was killed: its partial outputs go
                _remove(clean)
                record.update({k: rec[k] for k in ("aside", "aside_key", "aside_seconds", "aside_record")
                               if k in rec})
            elif rec and rec.get("done") and any(p.exists() for p in clean):
                record.update(aside=[str(_aside(p)) for p in clean if p.exists()],
                              aside_key=rec["key"], aside_seconds=rec.get("seconds", 0.0),
                              aside_record={k: rec[k] for k in ("generation", "outputs") if k in rec})
                started_change = True
            elif rec:  # a killed run of other inputs: its partial outputs go
                _remove(clean)
        record["done"] = False
        write_json(self._path(name), record)  # the plan first, then the moves it names
        self._move_aside(record, clean)
        return record, started_change

    def _foreign(self, name: str, rec: dict, files: list[Path]) -> str | None:
        """How the files of finished stage ``name`` differ from those it recorded (one phrase
        naming the file), or None. A record without a manifest is trusted and given one; a
        manifest whose mtimes were refreshed (same content) is written back."""
        if "outputs" not in rec:
            write_json(self._path(name), {**rec, "outputs": manifest(files, self.root)})
            return None
        diff, fresh = manifest_mismatch(rec["outputs"], files, self.root, full=self.verify)
        if diff is None and fresh != rec["outputs"]:
            write_json(self._path(name), {**rec, "outputs": fresh})
        return diff

    @staticmethod
    def _move_aside(record: dict, clean: list[Path]) -> None:
        """Carry out the moves a record names (again after a kill between plan and move)."""
        for p in clean:
            a = _aside(p)
            if str(a) in record.get("aside", []) and p.exists() and not a.exists():
                os.replace(p, a)
                fsync_dir(p.parent)

    def _restore(self, name: str, rec: dict, clean: list[Path]) -> None:
        """The outputs kept aside back in place (replacing partial new ones), the old record
        back. Safe to repeat after a kill part way."""
        for p in clean:
            a = _aside(p)
            if str(a) in rec["aside"] and a.exists():
                _remove([p])
                os.replace(a, p)
                fsync_dir(p.parent)
        write_json(self._path(name), {"key": rec["aside_key"], "done": True,
                                      "seconds": rec.get("aside_seconds", 0.0),
                                      **rec.get("aside_record", {})})


def _outputs_key(rec: dict) -> str:
    """The key downstream stages see: the input key, changed each time the stage was redone
    because its outputs were not the ones it wrote (``generation``)."""
    return _key([rec["key"], rec["generation"]]) if rec.get("generation") else rec["key"]


def _aside(p: Path) -> Path:
    """Where a stage's old output waits while the stage is redone."""
    return p.parent / f".{p.name}.replaced"


def _remove(paths) -> None:
    for p in paths:
        p = Path(p)
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def main_run_of(path: str | Path) -> Path | None:
    """The main job's run folder that ``path`` is (or is inside), found by its stage records
    (``RUN/stages/<stage>__<model>.json``); None when there is none."""
    path = Path(path).resolve()
    for p in (path, *path.parents):
        if (p / "stages").is_dir() and any((p / "stages").glob("*__*.json")):
            return p
    return None


def refuse_inside_main_run(out: str | Path, option: str) -> None:
    """A command writing into ``out`` (``train``, ``fit``, ``explain``) is refused in one line
    (``ValueError``) when ``out`` is inside a main job's run folder: its stages own every folder
    there, and ``interpretgan run`` redoes a stage whose files another command changed."""
    root = main_run_of(out)
    if root is not None:
        raise ValueError(f"{out} is inside the run folder {root} of `interpretgan run`, whose "
                         f"stages own it: pass {option} DIR outside {root} (e.g. "
                         f"{root.parent / (root.name + '-' + Path(out).name)})")


MODEL_KEYS = ("natural", "adversarially_trained")
