"""A study's results on disk: one SQLite file (WAL) in the study folder, checkpoints beside it.

Tables:

- ``meta``: the spec (TOML text and normalized JSON), software versions, the machine.
- ``conditions``: one row per condition (name, regularizer, strength).
- ``batches``: runs that share compiled code, with their progress and current checkpoint.
- ``runs``: one row per (condition, seed): batch, status, timings, error.
- ``metrics``: metric names; ``curves``: long form ``(metric, run, step, value)``, one row
  per finite value (an update where no episode ended has no score row).

Every chunk of a batch is one transaction (:meth:`Store.record_chunk`), written after the
chunk's checkpoint file, which is named by its update count: whatever happens, the store
names a checkpoint that exists and matches the curves it holds. A store is created under a
temporary name and renamed into place, so there is never a half-created study.

A study folder may come from someone else: a store is opened read-only and checked to be a
study store of ours before it is read, and reopened for writing only by a study that runs;
the checkpoint names it holds are checked (:func:`~regspeed.study.files.checkpoint_path`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from regspeed.errors import ConfigError
from regspeed.study import files
from regspeed.study.files import CHECKPOINTS as CHECKPOINTS  # the folder's names, for this module's users
from regspeed.study.files import DATABASE, LOCK

FORMAT_VERSION = 2
TABLES = frozenset({"meta", "conditions", "batches", "runs", "metrics", "curves"})
SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's files beside the database

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE conditions (
    condition_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    strength REAL NOT NULL,
    regularizer TEXT NOT NULL
);
CREATE TABLE batches (
    batch_id INTEGER PRIMARY KEY,
    condition_ids TEXT NOT NULL,
    total_updates INTEGER NOT NULL,
    updates_done INTEGER NOT NULL DEFAULT 0,
    checkpoint TEXT,
    wall_seconds REAL NOT NULL DEFAULT 0
);
CREATE TABLE runs (
    run_id INTEGER PRIMARY KEY,
    condition_id INTEGER NOT NULL REFERENCES conditions,
    seed INTEGER NOT NULL,
    batch_id INTEGER NOT NULL REFERENCES batches,
    position INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'finished', 'failed')),
    updates_done INTEGER NOT NULL DEFAULT 0,
    started REAL,
    finished REAL,
    wall_seconds REAL NOT NULL DEFAULT 0,
    error TEXT,
    UNIQUE (condition_id, seed),
    UNIQUE (batch_id, position)
);
CREATE TABLE metrics (metric_id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE curves (
    metric_id INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (metric_id, run_id, step)  -- reading one metric of every run is one range scan
) WITHOUT ROWID;
"""


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """A run as planned: its condition, seed, batch and position within the batch."""

    condition: str
    seed: int
    batch: int
    position: int


@dataclasses.dataclass(frozen=True)
class RunRow:
    """A run as stored."""

    run_id: int
    condition: str
    seed: int
    batch: int
    position: int
    status: str
    updates_done: int
    wall_seconds: float
    error: str | None


@dataclasses.dataclass(frozen=True)
class BatchRow:
    """A batch as stored."""

    batch_id: int
    conditions: list[str]
    total_updates: int
    updates_done: int
    checkpoint: str | None
    wall_seconds: float


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the study folder's lock; a second process is refused with a clear message.

    The lock is an ``flock`` on ``study.lock``: the kernel releases it when the holder
    dies, even by SIGKILL, so a crashed study never stays locked. A ``study.lock`` that is a
    symbolic link is refused, never followed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with files.open_plain(folder / LOCK, "study") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ConfigError(
                "study", f"{folder} is in use by {holder}; wait for it to finish or stop it, then run again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def exists(folder: Path) -> bool:
    """Whether ``folder`` holds something named like a study store (:meth:`Store.open` checks
    that it is one)."""
    return os.path.lexists(folder / DATABASE)


def _refuse_links(folder: Path) -> None:
    """Refuse a store, or a file SQLite keeps beside it, that is a symbolic link."""
    for name in (DATABASE, *(DATABASE + suffix for suffix in SIDE_FILES)):
        if (folder / name).is_symlink():
            raise files.damaged(folder, f"{name} is a symbolic link")


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that cannot write the database file (SQLite URI ``mode=ro``)."""
    connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=30)
    connection.execute("PRAGMA cache_size=-65536")  # 64 MiB of page cache
    return connection


def _connect_writable(path: Path) -> sqlite3.Connection:
    """A connection for the study's one writer: WAL, so that readers never wait for it."""
    connection = sqlite3.connect(path, timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA cache_size=-65536")
    return connection


def refuse_unless_study(connection: sqlite3.Connection, path: Path) -> None:
    """Raise :class:`ConfigError` unless the database is a study store: every table, this
    format version, and the spec (as a JSON object). Reads only."""
    tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if missing := sorted(TABLES - tables):
        raise ConfigError(
            "study",
            f"{path} is not a regspeed study store (it has no {', '.join(missing)} table"
            f"{'s' if len(missing) > 1 else ''}); give the folder of a study made by `regspeed study`",
        )
    meta = dict(connection.execute("SELECT key, value FROM meta WHERE key IN ('format_version', 'spec_json')"))
    if "format_version" not in meta:
        raise ConfigError("study", f"{path} is incomplete: its meta has no format_version; it cannot be read")
    if meta["format_version"] != str(FORMAT_VERSION):
        raise ConfigError(
            "study", f"{path} has store format {meta['format_version']!r}, this regspeed reads {FORMAT_VERSION}"
        )
    if "spec_json" not in meta:
        raise ConfigError("study", f"{path} is incomplete: its meta has no spec_json; it cannot be read")
    try:
        spec = json.loads(meta["spec_json"])
    except json.JSONDecodeError:
        spec = None
    if not isinstance(spec, dict):
        raise ConfigError("study", f"{path} is damaged: its spec_json is not a JSON object")


class Store:
    """An open study store. Use :meth:`create` or :meth:`open`, as a context manager
    (``with Store.open(folder) as store: ...``) or closing it with :meth:`close`."""

    def __init__(self, folder: Path, connection: sqlite3.Connection) -> None:
        self.folder = folder
        self.connection = connection
        self._metric_ids: dict[str, int] = dict(connection.execute("SELECT name, metric_id FROM metrics"))

    # ------------------------------------------------------------------ creation, opening

    @classmethod
    def create(
        cls,
        folder: Path,
        meta: dict[str, str],
        conditions: list[tuple[str, str, float, str]],
        batches: list[tuple[list[str], int]],
        runs: list[PlannedRun],
    ) -> Store:
        """Write a new store (atomically). ``conditions``: (name, kind, strength, regularizer
        JSON); ``batches``: (condition names, total updates), numbered from 0."""
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / DATABASE
        partial = folder / (DATABASE + files.PARTIAL)
        files.remove_leftover(partial.with_name(partial.name + "-journal"), "study")
        os.close(files.create_new(partial, "study"))  # an empty file is an empty database
        try:
            connection = sqlite3.connect(partial)
            with connection:
                connection.executescript(SCHEMA)
                connection.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    sorted((meta | {"format_version": str(FORMAT_VERSION)}).items()),
                )
                connection.executemany(
                    "INSERT INTO conditions (name, kind, strength, regularizer) VALUES (?, ?, ?, ?)", conditions
                )
                connection.executemany(
                    "INSERT INTO batches (batch_id, condition_ids, total_updates) VALUES (?, ?, ?)",
                    [(index, json.dumps(names), total) for index, (names, total) in enumerate(batches)],
                )
                ids = dict(connection.execute("SELECT name, condition_id FROM conditions"))
                connection.executemany(
                    "INSERT INTO runs (condition_id, seed, batch_id, position) VALUES (?, ?, ?, ?)",
                    [(ids[run.condition], run.seed, run.batch, run.position) for run in runs],
                )
            connection.close()
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
        files.checkpoint_folder(folder, create=True)
        return cls.open(folder, writable=True)

    @classmethod
    def open(cls, folder: Path, writable: bool = False) -> Store:
        """Open an existing store, read-only unless ``writable`` (a study that runs).

        It is opened read-only first and checked to be a study store of this format with its
        spec (:func:`refuse_unless_study`), and reopened for writing only then: a missing,
        foreign, empty, damaged or incomplete file is a clear error and is left as it was.
        """
        path = folder / DATABASE
        _refuse_links(folder)
        if not path.exists():
            raise ConfigError("study", f"{folder} holds no study ({DATABASE} is missing); run `regspeed study` first")
        if not path.is_file():
            raise files.damaged(folder, f"{DATABASE} is not a file")
        connection = None
        try:
            connection = _connect_read_only(path)
            refuse_unless_study(connection, path)
            if writable:
                connection.close()
                connection = _connect_writable(path)
            return cls(folder, connection)
        except BaseException as error:
            if connection is not None:
                connection.close()
            if isinstance(error, sqlite3.DatabaseError):
                raise ConfigError("study", f"{path} is damaged or not a regspeed study store ({error})") from None
            raise

    def close(self) -> None:
        """Close the database."""
        self.connection.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()

    # ------------------------------------------------------------------------ reading

    def meta(self) -> dict[str, str]:
        """Spec, versions and other study-level facts."""
        return dict(self.connection.execute("SELECT key, value FROM meta"))

    def conditions(self) -> list[dict[str, Any]]:
        """Conditions in study order: name, kind, strength, regularizer (dict)."""
        rows = self.connection.execute(
            "SELECT name, kind, strength, regularizer FROM conditions ORDER BY condition_id"
        ).fetchall()
        return [
            {"name": name, "kind": kind, "strength": strength, "regularizer": json.loads(regularizer)}
            for name, kind, strength, regularizer in rows
        ]

    def runs(self) -> list[RunRow]:
        """All runs, ordered by condition then seed."""
        rows = self.connection.execute(
            """SELECT run_id, conditions.name, seed, batch_id, position, status, updates_done, wall_seconds, error
               FROM runs JOIN conditions USING (condition_id) ORDER BY condition_id, seed"""
        ).fetchall()
        return [RunRow(*row) for row in rows]

    def batches(self) -> list[BatchRow]:
        """All batches in plan order; a checkpoint name that is not one of ours is a damaged study."""
        rows = self.connection.execute(
            "SELECT batch_id, condition_ids, total_updates, updates_done, checkpoint, wall_seconds FROM batches "
            "ORDER BY batch_id"
        ).fetchall()
        for row in rows:
            if row[4] is not None:
                files.checkpoint_path(self.folder, row[4])  # refuses a name leading anywhere but our checkpoints
        return [BatchRow(b, json.loads(c), t, u, ck, w) for b, c, t, u, ck, w in rows]

    def metric_names(self) -> list[str]:
        """Metrics that have values."""
        return sorted(self._metric_ids)

    def curve(self, metric: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """``run_id -> (steps, values)`` of one metric, steps ascending."""
        metric_id = self._metric_ids.get(metric)
        if metric_id is None:
            return {}
        rows = np.asarray(
            self.connection.execute(
                "SELECT run_id, step, value FROM curves WHERE metric_id = ? ORDER BY run_id, step", (metric_id,)
            ).fetchall(),
            dtype=float,
        ).reshape(-1, 3)
        result: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if len(rows):
            runs, starts = np.unique(rows[:, 0], return_index=True)
            for run, part in zip(runs, np.split(rows, starts[1:]), strict=True):
                result[int(run)] = (part[:, 1].astype(np.int64), part[:, 2])
        return result

    # ------------------------------------------------------------------------ writing

    def _metric_id(self, name: str) -> int:
        if name not in self._metric_ids:
            cursor = self.connection.execute("INSERT INTO metrics (name) VALUES (?)", (name,))
            self._metric_ids[name] = int(cursor.lastrowid)
        return self._metric_ids[name]

    def start_batch(self, batch_id: int) -> None:
        """Mark a batch's pending runs as running."""
        with self.connection:
            self.connection.execute(
                "UPDATE runs SET status = 'running', started = ? WHERE batch_id = ? AND status = 'pending'",
                (time.time(), batch_id),
            )

    def record_chunk(
        self,
        batch_id: int,
        updates_done: int,
        curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
        live_positions: list[int],
        failures: dict[int, str],
        checkpoint: str,
        seconds: float,
        finished: bool,
    ) -> None:
        """One transaction: a chunk's curves, the runs' progress, new failures and the
        batch's checkpoint. ``curves``: metric -> (positions, steps, values), finite values
        only; ``live_positions``: runs that were still running through this chunk."""
        run_ids = dict(self.connection.execute("SELECT position, run_id FROM runs WHERE batch_id = ?", (batch_id,)))
        now = time.time()
        with self.connection:
            for name, (positions, steps, values) in curves.items():
                metric_id = self._metric_id(name)
                ids = [run_ids[p] for p in positions.tolist()]
                self.connection.executemany(
                    "INSERT INTO curves VALUES (?, ?, ?, ?)",
                    zip([metric_id] * len(ids), ids, steps.tolist(), values.tolist(), strict=True),
                )
            live = [(updates_done, seconds, run_ids[p]) for p in live_positions]
            self.connection.executemany(
                "UPDATE runs SET updates_done = ?, wall_seconds = wall_seconds + ? WHERE run_id = ?", live
            )
            self.connection.executemany(
                "UPDATE runs SET status = 'failed', error = ?, finished = ? WHERE run_id = ?",
                [(why, now, run_ids[p]) for p, why in failures.items()],
            )
            if finished:
                self.connection.execute(
                    "UPDATE runs SET status = 'finished', finished = ? WHERE batch_id = ? AND status = 'running'",
                    (now, batch_id),
                )
            self.connection.execute(
                "UPDATE batches SET updates_done = ?, checkpoint = ?, wall_seconds = wall_seconds + ? "
                "WHERE batch_id = ?",
                (updates_done, checkpoint, seconds, batch_id),
            )
