"""Writing files and folders so that a reader sees a complete one, or the previous one, never
half of either.

One file: written under a temporary name in the same folder, then renamed over the target
(``write_atomic``). One folder: filled under a temporary name, then swapped with the old one
by an atomic exchange where the kernel offers it (Linux ``renameat2``), else by two renames
whose half-done state the next writer repairs (``replace_directory``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["default_mode", "write_atomic", "write_text_atomic", "atomic_directory",
           "replace_directory", "recover_directory", "new_partial", "unmark", "safe_text",
           "TEMPORARY_MARK"]


def default_mode(path: str | Path, directory: bool = False) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries; give results the usual mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    The file gets the usual mode (0666 less the umask). On any error the temporary file is
    removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """``write_atomic`` for UTF-8 text."""
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


def safe_text(value: object) -> str:
    """``str(value)`` that can always be encoded as UTF-8: file names that are not valid
    UTF-8 (surrogate escapes) show U+FFFD instead of failing in a report or a JSON file."""
    return str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# ------------------------------------------------------------------------------- folders

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _renameat2() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _renameat2()


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` in one atomic step; False where the system cannot."""
    if _RENAMEAT2 is None:
        return False
    ok = _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if ok == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the file system cannot exchange
        return False
    raise OSError(err, f"cannot exchange {a} and {b}: {os.strerror(err)}")


def _previous_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.previous")


# A file inside each temporary folder latentatlas creates: a leftover folder is deleted only
# when it holds one, so a user's folder that merely has a similar name is never touched.
TEMPORARY_MARK = ".latentatlas-temporary"


def _ours(folder: Path) -> bool:
    return folder.is_dir() and not folder.is_symlink() and (folder / TEMPORARY_MARK).is_file()


def recover_directory(path: str | Path) -> None:
    """Repair what an interrupted :func:`replace_directory` left (two-rename fallback only).

    ``path`` missing with a ``.previous`` copy beside it: the old folder is put back. Both
    present: the swap had completed, and the stale copy is removed if latentatlas marked it
    (a folder of that name that it did not make is left alone).
    """
    path = Path(path)
    previous = _previous_name(path)
    if not previous.is_dir():
        return
    if not path.exists():
        previous.rename(path)
        (path / TEMPORARY_MARK).unlink(missing_ok=True)
        log.warning("restored %s from an interrupted write", path)
    elif _ours(previous):
        shutil.rmtree(previous, ignore_errors=True)
    else:
        log.warning("%s exists beside %s but latentatlas did not make it: left alone",
                    previous, path)


def replace_directory(new: Path, path: Path) -> None:
    """Give the complete folder ``new`` the name ``path``, replacing an old ``path``.

    At every moment ``path`` names either the old or the new folder (atomic exchange), or,
    on file systems without it, the old folder is kept as ``.NAME.previous`` (marked as
    latentatlas's) until the new one is in place and :func:`recover_directory` puts it back
    after a crash in between. Callers decide beforehand whether ``path`` may be replaced.
    """
    recover_directory(path)
    if not path.exists():
        new.rename(path)
        return
    if _exchange(new, path):
        # ``new`` (a name mkdtemp made unique) now names the old folder
        shutil.rmtree(new, ignore_errors=True)
        return
    previous = _previous_name(path)
    if previous.exists() or previous.is_symlink():
        raise FileExistsError(
            f"cannot replace {path}: {previous.name} beside it was not made by latentatlas and "
            "this file system cannot swap folders atomically; move it away and run again")
    path.rename(previous)
    (previous / TEMPORARY_MARK).touch()
    new.rename(path)
    shutil.rmtree(previous, ignore_errors=True)


def new_partial(path: Path) -> Path:
    """A fresh, empty temporary folder beside ``path`` to build it in, marked as
    latentatlas's; the marked leftovers of interrupted writers of ``path`` are removed first.
    Call :func:`unmark` on it before it takes its final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.partial-*"):
        if _ours(stale):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    default_mode(tmp, directory=True)
    (tmp / TEMPORARY_MARK).touch()
    return tmp


def unmark(folder: Path) -> None:
    """Remove the marker :func:`new_partial` put in ``folder`` (it is about to be kept)."""
    (folder / TEMPORARY_MARK).unlink(missing_ok=True)


@contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path`` to fill.

    When the block ends normally the folder takes the name ``path`` (replacing an older one
    by :func:`replace_directory`); when it raises, the temporary folder is deleted and
    ``path`` is left as it was. Callers decide beforehand whether ``path`` may be replaced.
    """
    path = Path(path)
    tmp = new_partial(path)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    unmark(tmp)
    replace_directory(tmp, path)
