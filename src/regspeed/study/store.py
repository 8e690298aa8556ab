"""A study's results on disk: one SQLite file (WAL) in the study folder, checkpoints beside it.

Tables:

- ``meta``: the spec (TOML text and normalized JSON), software versions, the machine.
- ``conditions``: one row per condition (name, regularizer, strength).
- ``batches``: runs that share compiled code, with their progress and current checkpoint.
- ``runs``: one row per (condition, seed): batch, status, timings, error.
- ``metrics``: metric names; ``curves``: long form ``(metric, run, step, value)``, one row
  per finite value (an update where no episode ended has no score row).
- ``chunks`` (format 3): per chunk of a batch and metric, the row count, step range and a
  SHA-256 of its curve rows (:func:`chunk_digest`), which :meth:`Store.curve` verifies.

Every chunk of a batch is one transaction (:meth:`Store.record_chunk`), written after the
chunk's checkpoint file, which is named by its update count: whatever happens, the store
names a checkpoint that exists and matches the curves it holds. Only a batch's latest
checkpoint is kept: one that goes missing or unreadable (:class:`UnreadableCheckpointError`)
costs the progress of an unfinished batch, which then restarts from scratch
(:meth:`Store.restart_batch`), never its curves. A store is created under a temporary name
and renamed into place, so there is never a half-created study; a sequential study's later
waves are added in one transaction each (:meth:`Store.add_wave`).

Damage to the file itself is found before results are read from it: SQLite's
``quick_check`` when it is opened (:func:`refuse_if_damaged`) and the chunks' checksums
when curves are read; either failing is "damaged", never numbers computed from it. Stores
of format 2 (before the checksums) are read with the integrity check alone, and a resumed
one goes on without checksums.

A study folder may come from someone else: a store is opened read-only and checked to be a
study store of ours before it is read, and reopened for writing only by a study that runs;
the checkpoint names it holds are checked (:func:`~regspeed.study.files.checkpoint_path`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from regspeed.errors import ConfigError
from regspeed.safe_text import printable
from regspeed.study import files
from regspeed.study.files import CHECKPOINTS as CHECKPOINTS  # the folder's names, for this module's users
from regspeed.study.files import DATABASE, LOCK

FORMAT_VERSION = 3  # 3: curve checksums (``chunks``); 2 is still read
READABLE_FORMATS = ("2", "3")
TABLES = frozenset({"meta", "conditions", "batches", "runs", "metrics", "curves"})  # every format's
CHECKSUMS = "chunks"  # the table format 3 adds
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
CREATE TABLE chunks (
    metric_id INTEGER NOT NULL,
    batch_id INTEGER NOT NULL,
    updates_done INTEGER NOT NULL,  -- the chunk's end
    first_step INTEGER NOT NULL,  -- the steps of its rows: chunks of a batch never overlap
    last_step INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    sha256 BLOB NOT NULL,  -- chunk_digest of its rows
    PRIMARY KEY (metric_id, batch_id, updates_done)
) WITHOUT ROWID;
"""
ROW = np.dtype([("run", "<i8"), ("step", "<i8"), ("value", "<f8")])  # a curve row as its chunk's checksum covers it


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


class UnreadableCheckpointError(ConfigError):
    """A batch's checkpoint is missing or cannot be read. The curves it continued are intact;
    what is lost is the carry (to watch its runs, or to continue an unfinished batch)."""

    def __init__(self, folder: Path, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason  # "is missing", or "cannot be read (why)"
        super().__init__(
            "study",
            f"{folder}: the checkpoint {name} {reason}; its batch's runs cannot be watched or continued "
            "(their curves are intact)",
        )


def read_checkpoint(folder: Path, name: str) -> dict[str, np.ndarray]:
    """Every array of the checkpoint ``name`` that a store names (checked by
    :func:`~regspeed.study.files.checkpoint_path`), read whole, so that a damaged file (the
    zip's CRC-32) is found now. Missing or unreadable: :class:`UnreadableCheckpointError`."""
    path = files.checkpoint_path(folder, name)
    if not path.is_file():
        raise UnreadableCheckpointError(folder, name, "is missing")
    try:
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as error:  # whatever its bytes make zipfile or NumPy raise: it cannot be read
        why = printable(f"{type(error).__name__}: {error}")
        raise UnreadableCheckpointError(folder, name, f"cannot be read ({why[:160]})") from None
    if "format_version" not in arrays:
        raise UnreadableCheckpointError(folder, name, "cannot be read (it holds no checkpoint of ours)")
    return arrays


def row_table(run_ids: np.ndarray, steps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Curve rows of one metric as :data:`ROW` records, in the order given; values as SQLite
    gives them back (it stores ``-0.0`` as the integer 0, so it reads back as ``0.0``)."""
    table = np.empty(len(run_ids), ROW)
    table["run"], table["step"] = run_ids, steps
    table["value"] = np.asarray(values, np.float64) + 0.0  # -0.0 + 0.0 is 0.0
    return table


def chunk_digest(metric: str, rows: np.ndarray) -> bytes:
    """The SHA-256 that ``chunks`` holds for one metric's rows of a chunk: over the metric's
    name and the :func:`row_table` records sorted by run, then step."""
    return _hasher(metric, rows.tobytes()).digest()


def _hasher(metric: str, data: bytes = b"") -> Any:
    return hashlib.sha256(metric.encode() + b"\0" + data)


def chunk_problem(
    metric: str, rows: np.ndarray, batch_of_run: dict[int, int], chunks: list[tuple[int, int, int, int, int, bytes]]
) -> str | None:
    """Why one metric's curve rows, as read (a :func:`row_table` sorted by run, then step), do
    not match the checksums of the chunks that wrote them, or None if they match.

    ``chunks``: the metric's ``(batch, updates_done, first_step, last_step, rows, sha256)``,
    ordered by batch, then step. A row belongs to the chunk of its run's batch whose steps
    cover its step; each chunk's rows are hashed run by run, as they come.
    """
    firsts = np.asarray([chunk[2] for chunk in chunks], np.int64)
    lasts = np.asarray([chunk[3] for chunk in chunks], np.int64)
    by_batch: dict[int, list[int]] = {}
    for index, chunk in enumerate(chunks):
        by_batch.setdefault(chunk[0], []).append(index)
    of_batch = {batch: np.asarray(indexes, np.int64) for batch, indexes in by_batch.items()}  # by step
    hashers = [_hasher(metric) for _ in chunks]
    counts = np.zeros(len(chunks), np.int64)
    for part in _split_by_run(rows):
        run, steps = int(part["run"][0]), part["step"]
        candidates = of_batch.get(batch_of_run.get(run, -1), np.zeros(0, np.int64))
        position = np.searchsorted(lasts[candidates], steps)  # the first chunk ending at or after each step
        if (position >= len(candidates)).any() or (steps < firsts[candidates[position]]).any():
            return f"run {run} has {metric} values at steps that no chunk of its batch wrote"
        chunk = candidates[position]
        cuts = np.flatnonzero(np.diff(chunk)) + 1
        for piece, index in zip(np.split(part, cuts), chunk[np.r_[0, cuts]].tolist(), strict=True):
            hashers[index].update(piece.tobytes())
            counts[index] += len(piece)
    for index, (batch, updates_done, _, _, count, digest) in enumerate(chunks):
        chunk_name = f"the chunk of batch {batch} ending at update {updates_done}"
        if counts[index] != count:
            return f"{chunk_name} has {counts[index]} {metric} values, {count} were written"
        if hashers[index].digest() != digest:
            return f"the {metric} values of {chunk_name} differ from those written"
    return None


def _split_by_run(rows: np.ndarray) -> list[np.ndarray]:
    """Rows sorted by run, as one part per run."""
    if len(rows) == 0:
        return []
    return np.split(rows, np.flatnonzero(np.diff(rows["run"])) + 1)


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
    """A connection that cannot write the database file (SQLite URI ``mode=ro``).

    A store in WAL mode needs its ``-shm`` file, which SQLite creates on first reading; in a
    folder that cannot be written (a read-only mount) and has none, the file is opened
    ``immutable`` instead (nobody can be writing it), unless its ``-wal`` still holds writes
    (a study stopped while writing, then made read-only): those would be missed, so that is
    refused in one line."""
    uri = f"{path.absolute().as_uri()}?mode=ro"
    folder = path.parent
    if not os.access(folder, os.W_OK) and not os.path.lexists(f"{path}-shm"):
        wal = Path(f"{path}-wal")
        if wal.is_file() and wal.stat().st_size > 0:
            raise ConfigError(
                "study",
                f"{folder} cannot be written and its last writes are still in {wal.name} (the study was stopped "
                "while writing); copy the folder somewhere writable and give the copy",
            )
        uri += "&immutable=1"
    connection = sqlite3.connect(uri, uri=True, timeout=30)
    connection.execute("PRAGMA cache_size=-65536")  # 64 MiB of page cache
    return connection


def _connect_writable(path: Path) -> sqlite3.Connection:
    """A connection for the study's one writer: WAL, so that readers never wait for it."""
    connection = sqlite3.connect(path, timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA cache_size=-65536")
    return connection


def _not_a_study(path: Path, missing: list[str]) -> ConfigError:
    return ConfigError(
        "study",
        f"{path} is not a regspeed study store (it has no {', '.join(missing)} table"
        f"{'s' if len(missing) > 1 else ''}); give the folder of a study made by `regspeed study`",
    )


def refuse_unless_study(connection: sqlite3.Connection, path: Path) -> None:
    """Raise :class:`ConfigError` unless the database is a study store: every table of its
    format, a format this regspeed reads, and the spec (as a JSON object). Reads only."""
    tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if missing := sorted(TABLES - tables):
        raise _not_a_study(path, missing)
    meta = dict(connection.execute("SELECT key, value FROM meta WHERE key IN ('format_version', 'spec_json')"))
    if "format_version" not in meta:
        raise ConfigError("study", f"{path} is incomplete: its meta has no format_version; it cannot be read")
    if meta["format_version"] not in READABLE_FORMATS:
        raise ConfigError(
            "study",
            f"{path} has store format {meta['format_version']!r}, this regspeed reads {' and '.join(READABLE_FORMATS)}",
        )
    if meta["format_version"] != "2" and CHECKSUMS not in tables:
        raise _not_a_study(path, [CHECKSUMS])
    if "spec_json" not in meta:
        raise ConfigError("study", f"{path} is incomplete: its meta has no spec_json; it cannot be read")
    try:
        spec = json.loads(meta["spec_json"])
    except json.JSONDecodeError:
        spec = None
    if not isinstance(spec, dict):
        raise ConfigError("study", f"{path} is damaged: its spec_json is not a JSON object")


def refuse_if_damaged(connection: sqlite3.Connection, folder: Path) -> None:
    """Refuse a damaged file as "damaged": SQLite's ``quick_check``, the structure of every page
    and record (unlike ``integrity_check``, not that indexes match their tables: that costs
    about 40% more, and the curves, nearly all of the file, have no separate index). Its
    values are covered by the chunks' checksums (:meth:`Store.curve`)."""
    try:
        found = [message for (message,) in connection.execute("PRAGMA quick_check(1)")]
    except sqlite3.DatabaseError as error:
        raise files.damaged(folder, f"SQLite cannot read {DATABASE} ({error})") from None
    if found != ["ok"]:
        raise files.damaged(folder, f"SQLite's check of {DATABASE} failed ({printable(found[0])[:160]})")


def _insert_plan(
    connection: sqlite3.Connection, first: int, batches: list[tuple[list[str], int]], runs: list[PlannedRun]
) -> None:
    """Insert planned batches, numbered from ``first``, and their runs (pending), inside the
    caller's transaction."""
    connection.executemany(
        "INSERT INTO batches (batch_id, condition_ids, total_updates) VALUES (?, ?, ?)",
        [(index, json.dumps(names), total) for index, (names, total) in enumerate(batches, start=first)],
    )
    ids = dict(connection.execute("SELECT name, condition_id FROM conditions"))
    connection.executemany(
        "INSERT INTO runs (condition_id, seed, batch_id, position) VALUES (?, ?, ?, ?)",
        [(ids[run.condition], run.seed, run.batch, run.position) for run in runs],
    )


class Store:
    """An open study store. Use :meth:`create` or :meth:`open`, as a context manager
    (``with Store.open(folder) as store: ...``) or closing it with :meth:`close`."""

    def __init__(self, folder: Path, connection: sqlite3.Connection) -> None:
        self.folder = folder
        self.connection = connection
        self._metric_ids: dict[str, int] = dict(connection.execute("SELECT name, metric_id FROM metrics"))
        (version,) = connection.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
        self.checksummed = version != "2"  # format 2 has no chunks table: its curves are read unverified
        self._intact = False  # refuse_if_damaged passed

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
                _insert_plan(connection, 0, batches, runs)
            connection.close()
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
        files.checkpoint_folder(folder, create=True)
        return cls.open(folder, writable=True)

    @classmethod
    def open(cls, folder: Path, writable: bool = False, check: bool = True) -> Store:
        """Open an existing store, read-only unless ``writable`` (a study that runs).

        It is opened read-only first and checked to be a study store of a format we read with
        its spec (:func:`refuse_unless_study`) and, unless ``check`` is off (for a caller that
        opens it again at once), to be an undamaged file (:func:`refuse_if_damaged`); it is
        reopened for writing only then: a missing, foreign, empty, damaged or incomplete file
        is a clear error and is left as it was.
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
            if check:
                refuse_if_damaged(connection, folder)
            if writable:
                connection.close()
                connection = _connect_writable(path)
            store = cls(folder, connection)
            store._intact = check
            return store
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

    def check_integrity(self) -> None:
        """:func:`refuse_if_damaged`, unless this store has passed it (:meth:`open` runs it)."""
        if not self._intact:
            refuse_if_damaged(self.connection, self.folder)
            self._intact = True

    def curve(self, metric: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """``run_id -> (steps, values)`` of one metric, steps ascending; verified against the
        chunks' checksums (format 3) after the file's integrity check."""
        self.check_integrity()
        metric_id = self._metric_ids.get(metric)
        if metric_id is None:
            return {}
        try:
            rows = np.asarray(
                self.connection.execute(
                    "SELECT run_id, step, value FROM curves WHERE metric_id = ? ORDER BY run_id, step", (metric_id,)
                ).fetchall(),
                dtype=float,
            ).reshape(-1, 3)
        except (sqlite3.DatabaseError, ValueError, TypeError) as error:  # a value that is not a number
            raise files.damaged(self.folder, f"its {metric} curves cannot be read ({error})") from None
        if self.checksummed:
            self._verify(metric, metric_id, rows)
        result: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if len(rows):
            runs, starts = np.unique(rows[:, 0], return_index=True)
            for run, part in zip(runs, np.split(rows, starts[1:]), strict=True):
                result[int(run)] = (part[:, 1].astype(np.int64), part[:, 2])
        return result

    def _verify(self, metric: str, metric_id: int, rows: np.ndarray) -> None:
        """Refuse curve rows of ``metric`` that do not match their chunks' checksums."""
        chunks = self.connection.execute(
            "SELECT batch_id, updates_done, first_step, last_step, rows, sha256 FROM chunks WHERE metric_id = ? "
            "ORDER BY batch_id, last_step",
            (metric_id,),
        ).fetchall()
        batch_of_run = dict(self.connection.execute("SELECT run_id, batch_id FROM runs"))
        problem = chunk_problem(metric, row_table(rows[:, 0], rows[:, 1], rows[:, 2]), batch_of_run, chunks)
        if problem is not None:
            raise files.damaged(self.folder, f"{DATABASE} does not match its checksums: {problem}")

    # ------------------------------------------------------------------------ writing

    def add_wave(self, batches: list[tuple[list[str], int]], runs: list[PlannedRun], meta: dict[str, str]) -> None:
        """One transaction: a sequential study's next wave. ``batches`` (condition names, total
        updates) are numbered on from the stored ones, ``runs`` name those numbers, and the
        ``meta`` facts given (the plan's) replace their stored values."""
        (first,) = self.connection.execute("SELECT COALESCE(MAX(batch_id) + 1, 0) FROM batches").fetchone()
        outside = sorted({run.batch for run in runs} - set(range(first, first + len(batches))))
        if outside:
            raise ValueError(
                f"runs of a new wave name batches {outside}, not its {first} to {first + len(batches) - 1}"
            )
        with self.connection:
            _insert_plan(self.connection, first, batches, runs)
            self.connection.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", sorted(meta.items()))

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
                if self.checksummed and ids:
                    rows = row_table(np.asarray(ids, np.int64), steps, values)
                    rows = rows[np.lexsort((rows["step"], rows["run"]))]
                    digest = chunk_digest(name, rows)
                    first, last = int(rows["step"].min()), int(rows["step"].max())
                    self.connection.execute(  # a batch that reruns a chunk replaces its checksum
                        "INSERT OR REPLACE INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (metric_id, batch_id, updates_done, first, last, len(ids), digest),
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

    def restart_batch(self, batch_id: int) -> None:
        """One transaction: the batch's curves and checksums are removed and its runs and
        progress reset (pending, no checkpoint), so that it reruns from scratch as if it had
        never started."""
        with self.connection:
            self.connection.execute(
                "DELETE FROM curves WHERE run_id IN (SELECT run_id FROM runs WHERE batch_id = ?)", (batch_id,)
            )
            if self.checksummed:
                self.connection.execute("DELETE FROM chunks WHERE batch_id = ?", (batch_id,))
            self.connection.execute(
                "UPDATE runs SET status = 'pending', updates_done = 0, started = NULL, finished = NULL, "
                "wall_seconds = 0, error = NULL WHERE batch_id = ?",
                (batch_id,),
            )
            self.connection.execute(
                "UPDATE batches SET updates_done = 0, checkpoint = NULL, wall_seconds = 0 WHERE batch_id = ?",
                (batch_id,),
            )
