"""Results folders that never cost the user a file.

Every command writes one results folder. It carries a marker file (``latentatlas-run.json``:
command, version, date, configuration, and the list of the entries it wrote), so a later run
can tell its own folder from anybody else's:

- ``--out`` missing or empty: the results are built under a temporary name and renamed.
- ``--out`` a latentatlas results folder holding only its own entries: the new folder is
  built beside it and swapped in atomically (:func:`latentatlas._files.replace_directory`).
- anything else (a file, a folder with other files, a folder holding an input): refused
  with a clear error before any work starts, unless ``overwrite=True``; even then only
  latentatlas's own entries are replaced, the other files are left alone (an entry of this
  run whose name a user's file already has is written as ``latentatlas-NAME``), and an input
  is never overwritten.

``check_output`` runs first (and fails early); ``results_folder`` wraps the writing.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from latentatlas import __version__
from latentatlas._files import (
    TEMPORARY_MARK,
    new_partial,
    recover_directory,
    replace_directory,
    safe_text,
    unmark,
    write_text_atomic,
)

log = logging.getLogger(__name__)

__all__ = ["MARKER", "OutputError", "OutputPlan", "add_own_entry", "check_output",
           "check_output_file", "read_marker", "results_folder", "save_signals"]

MARKER = "latentatlas-run.json"
_LIST_LIMIT = 5


class OutputError(ValueError):
    """The output location cannot be used as asked; the message says why and what to do."""


@dataclass(frozen=True)
class OutputPlan:
    """Where and how a run writes.

    mode: ``new`` (nothing there, or an empty folder), ``replace`` (a latentatlas results
    folder holding only its own entries: swapped whole), ``merge`` (``overwrite=True`` on a
    folder with other files: only latentatlas's entries are replaced).
    own: entries of the existing folder that latentatlas wrote (its marker's list).
    """

    path: Path
    mode: Literal["new", "replace", "merge"]
    own: tuple[str, ...] = ()


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """The marker of a results folder, or None when ``folder`` is not one."""
    path = Path(folder) / MARKER
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != "latentatlas-results":
        return None
    entries = doc.get("entries")
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        return None
    return doc


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(sorted(names)[:_LIST_LIMIT])
    more = len(names) - _LIST_LIMIT
    return shown + (f" and {more} more" if more > 0 else "")


def _resolved(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(Path(path).expanduser()))


def _inside(child: Path, folder: Path) -> bool:
    try:
        child.relative_to(folder)
    except ValueError:
        return False
    return True


def _check_writable(folder: Path, out: Path) -> None:
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot create {safe_text(out)}: {safe_text(probe)} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {safe_text(out)}: {safe_text(probe)} is not writable; "
                          "choose another --out")


def check_output(
    out: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]] = (),
    overwrite: bool = False,
) -> OutputPlan:
    """Decide how a run may write the folder ``out``, or refuse with :class:`OutputError`.

    Call it before any work starts. inputs: the files the run reads (never replaced, and a
    folder holding one is not a results folder).
    """
    path = _resolved(out)
    recover_directory(path)
    if path.exists() and not path.is_dir():
        raise OutputError(
            f"--out {safe_text(out)} is an existing file, not a folder; results go into a "
            "folder: choose a new --out (the file is left alone)")
    _check_writable(path.parent if not path.exists() else path, path)
    if not path.exists():
        return OutputPlan(path, "new")
    real = Path(os.path.realpath(path))
    sources = [Path(os.path.realpath(p)) for p in inputs]
    entries = [e.name for e in path.iterdir()]
    inside = [s for s in sources if _inside(s, real)]
    marker = read_marker(path)
    own = tuple(marker["entries"]) if marker is not None else ()
    if not entries:
        return OutputPlan(path, "new")
    foreign = [e for e in entries if e != MARKER and e not in own]
    hint = ("choose a new --out, or pass --overwrite to write latentatlas's files into it "
            "(other files are kept)")
    if inside:
        clash = [s for s in inside if s.relative_to(real).parts[0] in own]
        if clash:
            raise OutputError(
                f"--out {safe_text(out)} holds the input {safe_text(clash[0])}, which a new run "
                "would replace: choose another --out")
        if not overwrite:
            raise OutputError(f"--out {safe_text(out)} holds the input "
                              f"{safe_text(inside[0])}; {hint}")
        return OutputPlan(path, "merge", own)
    if marker is None:
        if not overwrite:
            raise OutputError(
                f"--out {safe_text(out)} exists and is not a latentatlas results folder (it "
                f"holds {safe_text(_listing(entries))}); {hint}")
        return OutputPlan(path, "merge", own)
    if foreign:
        if not overwrite:
            raise OutputError(
                f"--out {safe_text(out)} is a latentatlas results folder, but also holds other "
                f"files ({safe_text(_listing(foreign))}); {hint}")
        return OutputPlan(path, "merge", own)
    return OutputPlan(path, "replace", own)


def _marker_text(command: str, config: dict[str, Any], entries: list[str],
                 inputs: Sequence[str | os.PathLike[str]]) -> str:
    doc = {
        "format": "latentatlas-results",
        "command": command,
        "latentatlas_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "inputs": [safe_text(p) for p in inputs],
        "config": config,
        "entries": sorted(entries),
    }
    return json.dumps(doc, indent=2, default=safe_text)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _staged(stage: Path) -> list[Path]:
    """The run's entries in its staging folder, sorted: not the marker file, nor the mark that
    keeps the staging folder recognisable as latentatlas's until its contents are moved."""
    return sorted(e for e in stage.iterdir() if e.name not in (MARKER, TEMPORARY_MARK))


def _rename_clashes(stage: Path, plan: OutputPlan) -> None:
    """Give a staged entry whose name a user's file or folder in ``plan.path`` already has
    (one latentatlas did not write) a ``latentatlas-`` prefix, so merging never replaces it."""
    for entry in _staged(stage):
        target = plan.path / entry.name
        if entry.name in plan.own or not (
                target.exists() or target.is_symlink()):
            continue
        n, name = 1, f"latentatlas-{entry.name}"
        while ((plan.path / name).exists() and name not in plan.own) or (stage / name).exists():
            n, name = n + 1, f"latentatlas-{n + 1}-{entry.name}"
        entry.rename(stage / name)
        log.warning("%s in %s is not latentatlas's: kept, and this run's %s written as %s",
                    safe_text(entry.name), safe_text(plan.path), safe_text(entry.name),
                    safe_text(name))


def _merge(stage: Path, plan: OutputPlan) -> None:
    """Move the staged entries into an existing folder one by one, marker last (and removed
    first: a folder without a marker is known to be incomplete)."""
    out = plan.path
    (out / MARKER).unlink(missing_ok=True)
    new = {e.name for e in _staged(stage)}
    for name in plan.own:
        if name not in new and name != MARKER and (out / name).exists():
            _remove(out / name)  # a stale entry of the previous run
    for name in sorted(new):
        target = out / name
        if (stage / name).is_dir():
            if target.exists() and not target.is_dir():
                target.unlink()
            replace_directory(stage / name, target)
        else:
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(stage / name, target)
    os.replace(stage / MARKER, out / MARKER)
    shutil.rmtree(stage, ignore_errors=True)


@contextmanager
def results_folder(
    plan: OutputPlan,
    command: str,
    config: dict[str, Any],
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> Iterator[Path]:
    """Yield an empty staging folder beside ``plan.path``; when the block ends normally the
    staged entries become the results (see the module docstring), with the marker listing
    them. When the block raises, the staging folder is removed and nothing else changes."""
    out = plan.path
    stage = new_partial(out)
    try:
        yield stage
        if plan.mode == "merge":
            _rename_clashes(stage, plan)
        entries = [e.name for e in _staged(stage)]
        write_text_atomic(stage / MARKER, _marker_text(command, config, entries, inputs))
        if plan.mode == "merge":
            _merge(stage, plan)
        else:
            if plan.mode == "new" and out.is_dir() and not any(out.iterdir()):
                out.rmdir()
            replace_directory(stage, out)
            # the mark leaves only once the folder has its name: a stage killed before that
            # is still marked, so the next run's new_partial removes it
            unmark(out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log.info("wrote %s", safe_text(out))


def add_own_entry(
    plan: OutputPlan,
    name: str,
    command: str,
    config: dict[str, Any],
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> OutputPlan:
    """Claim the entry ``name`` of the folder ``plan.path`` before the results are written
    (a run's checkpoints, which must survive the process): the folder is created if needed and
    its marker lists ``name`` as latentatlas's own, so a later run may replace it. Returns the
    plan for the final write."""
    out = plan.path
    out.mkdir(parents=True, exist_ok=True)
    marker = read_marker(out)
    own = set(plan.own) | {name}
    if marker is None:
        text = _marker_text(command, config, sorted(own), inputs)
    else:
        marker["entries"] = sorted(set(marker["entries"]) | {name})
        text = json.dumps(marker, indent=2, default=safe_text)
    write_text_atomic(out / MARKER, text)
    return OutputPlan(out, "merge" if plan.mode == "merge" else "replace", tuple(sorted(own)))


def check_output_file(
    out: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]] = (),
    overwrite: bool = False,
    own: bool = False,
) -> Path:
    """A single output file (``encode --out latents.npz``): never an input, and an existing
    file only with ``overwrite`` or when ``own`` says latentatlas wrote it."""
    path = _resolved(out)
    if any(os.path.realpath(path) == os.path.realpath(p) for p in inputs):
        raise OutputError(f"--out {safe_text(out)} is also an input; choose another --out")
    if path.is_dir():
        raise OutputError(f"--out {safe_text(out)} is a folder; give a file name")
    if path.exists() and not (overwrite or own):
        raise OutputError(f"--out {safe_text(out)} exists and was not written by latentatlas; "
                          "choose a new name or pass --overwrite")
    _check_writable(path.parent, path)
    return path


def save_signals(write: Callable[[Path], list[Path]], folder: Path) -> list[Path]:
    """Call ``write(folder)`` to save results as ``.hspy`` files (``hs.load`` opens them)
    beside latentatlas's own; without rosettasciio they are left out with a note in the log."""
    try:
        return write(folder)
    except ImportError as exc:
        log.info("results not written as .hspy: %s", exc)
        return []
