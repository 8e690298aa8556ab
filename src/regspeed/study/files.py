"""Safe file handling in a study folder, which may have come from someone else.

A study folder is not trusted: it may hold symbolic links planted where regspeed writes, and
its store may name files anywhere. So:

- files are written by :func:`replacing`: a fresh temporary file created with ``O_EXCL |
  O_NOFOLLOW``, renamed over its final name; a final name that is a link is refused;
- the lock is opened by :func:`open_plain`, which refuses a link;
- a checkpoint named by a store is reached only through :func:`checkpoint_path`: a plain
  name of our own pattern that stays inside the folder's ``checkpoints``;
- a folder is a place for a new study only if it holds nothing but what a study writes
  before its store exists (:func:`foreign_entries`);
- a folder that cannot be written (read-only, full disk, no permission) is one line naming
  it (:func:`refuse_unwritable`, :func:`writing_into`), never a traceback: what is stored
  stays consistent, and the same command resumes once there is room.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from regspeed.errors import ConfigError

DATABASE = "study.sqlite"
LOCK = "study.lock"
CHECKPOINTS = "checkpoints"
PARTIAL = ".partial"  # suffix of a file being written

# what runner writes: batch-NNNN-update-NNNNNNN.npz (more digits once the numbers outgrow them)
CHECKPOINT_NAME = re.compile(r"batch-[0-9]{4,}-update-[0-9]{7,}\.npz")
# what a study folder holds before its store exists (a study that crashed while being created)
LEFTOVERS_BEFORE_STORE = frozenset({LOCK, DATABASE + PARTIAL, DATABASE + PARTIAL + "-journal", CHECKPOINTS})

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


# why a write failed, by errno and by SQLite's primary result code
_WRITE_FAILURES = {
    errno.EROFS: "it is on a read-only file system",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}
_SQLITE_WRITE_FAILURES = {8: "the database is read-only", 13: "the disk is full"}  # SQLITE_READONLY, SQLITE_FULL
_AFTER_WRITE_FAILURE = "make room or give a writable folder, then run the same command again (nothing stored is lost)"


def cannot_write(folder: Path | str, reason: str, field: str = "out") -> ConfigError:
    """The one-line error for a folder regspeed cannot write to."""
    return ConfigError(field, f"cannot write to {folder}: {reason}; {_AFTER_WRITE_FAILURE}")


def refuse_unwritable(folder: Path, field: str = "out") -> None:
    """Refuse an existing ``folder`` that this process cannot create files in (a read-only
    mount, or no write permission), before anything is written."""
    if not folder.is_dir():
        return
    if os.statvfs(folder).f_flag & os.ST_RDONLY:
        raise cannot_write(folder, _WRITE_FAILURES[errno.EROFS], field)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise cannot_write(folder, _WRITE_FAILURES[errno.EACCES], field)


@contextlib.contextmanager
def writing_into(folder: Path, field: str = "out") -> Iterator[None]:
    """Turn a write that fails because of where it writes (read-only, disk full, quota, no
    permission), from the file system or from SQLite, into :func:`cannot_write` for the
    folder it was writing (the failing file's folder when the error names one)."""
    try:
        yield
    except sqlite3.OperationalError as error:
        reason = _SQLITE_WRITE_FAILURES.get(getattr(error, "sqlite_errorcode", 0) & 0xFF)
        if reason is None:
            raise
        raise cannot_write(folder, reason, field) from None
    except OSError as error:
        if error.errno not in _WRITE_FAILURES:
            raise
        where = Path(error.filename).parent if isinstance(error.filename, str | Path) else folder
        raise cannot_write(where, _WRITE_FAILURES[error.errno], field) from None


def refuse_link(path: Path, field: str) -> None:
    """Refuse ``path`` if it is a symbolic link or exists as something other than a plain file."""
    if path.is_symlink():
        raise ConfigError(field, f"{path} is a symbolic link; regspeed does not write through links: remove it")
    if path.exists() and not path.is_file():
        raise ConfigError(field, f"{path} is in the way: it is not a plain file; remove it or choose another path")


def remove_leftover(path: Path, field: str) -> None:
    """Remove an earlier partial file, or a link planted in its place (the link, not its target)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        raise ConfigError(field, f"{path} is in the way: it is not a plain file; remove it")


def create_new(path: Path, field: str) -> int:
    """A descriptor of a new, empty plain file at ``path``, open for writing; whatever was at
    ``path`` before (a leftover of ours, or a link) is removed first, never followed."""
    remove_leftover(path, field)
    try:
        return os.open(path, _CREATE, 0o666)
    except FileExistsError:  # something appeared between removing and creating: another writer
        busy = f"{path} appeared while regspeed was writing it; is another process writing here?"
        raise ConfigError(field, busy) from None


@contextlib.contextmanager
def replacing(path: Path, field: str, text: bool = False) -> Iterator[IO[Any]]:
    """Create or replace the plain file ``path`` atomically, never through a symbolic link.

    Yields a file (binary, or UTF-8 text without newline translation) that is
    ``<name>.partial``, created afresh; when the block ends it is flushed to disk and renamed
    over ``path``. If the block raises, ``path`` is left as it was. A ``path`` that is a link
    is refused (``field`` names the option in the message), and a folder that cannot take the
    file is one line (:func:`writing_into`).
    """
    refuse_link(path, field)
    partial = path.with_name(path.name + PARTIAL)
    with writing_into(path.parent, field):
        descriptor = create_new(partial, field)
        try:
            mode = {"mode": "w", "encoding": "utf-8", "newline": ""} if text else {"mode": "wb"}
            with os.fdopen(descriptor, **mode) as file:
                yield file
                file.flush()
                os.fsync(file.fileno())
            os.replace(partial, path)  # rename replaces a link at ``path`` itself, never its target
        finally:
            partial.unlink(missing_ok=True)


def open_plain(path: Path, field: str) -> IO[str]:
    """Open (creating it if needed) the plain file ``path`` for reading and writing, without
    truncating it; a symbolic link or anything but a plain file is refused."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ConfigError(field, f"{path} is a symbolic link; it must be a plain file: remove it") from None
        raise
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise ConfigError(field, f"{path} is not a plain file; remove it")
    return os.fdopen(descriptor, "r+")


def damaged(folder: Path, problem: str) -> ConfigError:
    """The error for a study folder whose contents regspeed did not write."""
    return ConfigError("study", f"{folder} is damaged: {problem}; restore it from a good copy or start the study anew")


def is_own_checkpoint(name: str) -> bool:
    """Whether ``name`` is a checkpoint file a study writes, or its partial file."""
    return CHECKPOINT_NAME.fullmatch(name.removesuffix(PARTIAL)) is not None


def checkpoint_folder(folder: Path, create: bool = False) -> Path:
    """The study's ``checkpoints`` folder (made if ``create``); a link or a file there is refused."""
    path = folder / CHECKPOINTS
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise damaged(folder, f"{path} is not a plain folder")
    if create:
        path.mkdir(exist_ok=True)
    return path


def checkpoint_path(folder: Path, name: object, must_exist: bool = False) -> Path:
    """The path of the checkpoint a store names, checked: a name of our own pattern, in the
    folder's ``checkpoints`` and staying there once links are resolved (and existing, if
    ``must_exist``). Anything else is a damaged study, never followed."""
    if not isinstance(name, str) or CHECKPOINT_NAME.fullmatch(name) is None:
        raise damaged(folder, f"its store names the checkpoint {name!r}, which is not a checkpoint file name")
    path = checkpoint_folder(folder) / name
    if not path.resolve().is_relative_to(folder.resolve() / CHECKPOINTS):
        raise damaged(folder, f"its checkpoint {name!r} is a link leading out of {folder / CHECKPOINTS}")
    if must_exist and not path.is_file():
        raise damaged(folder, f"its store names the checkpoint {name!r}, which is missing")
    return path


def foreign_entries(folder: Path) -> list[str]:
    """What ``folder`` holds besides what a study writes before its store exists (the lock,
    a partial store, ``checkpoints`` with our checkpoints): empty for a new or empty folder.
    Paths relative to ``folder``, sorted."""
    if not folder.is_dir():
        return []
    found = [entry.name for entry in folder.iterdir() if entry.name not in LEFTOVERS_BEFORE_STORE]
    checkpoints = folder / CHECKPOINTS
    if checkpoints.is_symlink() or (checkpoints.exists() and not checkpoints.is_dir()):
        found.append(CHECKPOINTS)
    elif checkpoints.is_dir():
        found += [f"{CHECKPOINTS}/{entry.name}" for entry in checkpoints.iterdir() if not is_own_checkpoint(entry.name)]
    return sorted(found)
