"""A study's results on disk: one SQLite file (WAL) in the study folder, checkpoints beside it.

Tables:

- ``meta``: the spec (TOML text and normalized JSON), software versions, the machine.
- ``cells`` (format 5): the study's cells, the combinations of its factors (board size 6,
  algorithm ppo, ...): a label and the cell's own validated spec (JSON). A study without
  factors has one, ``all`` (:data:`ONE_CELL`), of the study's spec.
- ``conditions``: one row per condition of a cell (name, regularizer, strength): the same
  names recur in every cell, a name is unique within its cell. Condition ids run cell by
  cell, and order the runs.
- ``batches``: runs that share compiled code, with their progress and current checkpoint;
  their conditions by name. A batch's runs are of one cell, or of several whose settings
  differ only in traced values (the learning rate); its ``cell`` is its first run's.
- ``runs``: one row per (condition, seed): batch, status, timings, error.
- ``metrics``: metric names; ``blocks`` (format 4): the curves, one row per chunk of a batch
  and metric holding its runs' finite values as arrays (:func:`encode_block`): run ids,
  values per run, steps (delta-coded, zlib; stored once when every run has the same) and
  values (float32 when each is a float32 exactly, as JAX's are, else float64), with a
  SHA-256 of the metric's name, the key and every byte (:func:`block_digest`) that reading
  verifies. About 4 bytes per value, read as arrays (:meth:`Store.curve_arrays`).

Format 4 had no cells (``conditions.name`` unique, no ``cell`` columns); formats 2 and 3 also
kept curves long form (``curves``: one row per value; format 3 also ``chunks``: a SHA-256 per
chunk of a batch and metric, :func:`chunk_digest`). They are still read, as one cell (verified
as before), and a study that resumes one rewrites it in place as format 5, in one transaction
(:meth:`Store.open` with ``writable``).

Every chunk of a batch is one transaction (:meth:`Store.record_chunk`), written after the
chunk's checkpoint file, which is named by its update count: whatever happens, the store
names a checkpoint that exists and matches the curves it holds. Only a batch's latest
checkpoint is kept: one that goes missing or unreadable (:class:`UnreadableCheckpointError`)
costs the progress of an unfinished batch, which then restarts from scratch
(:meth:`Store.restart_batch`), never its curves. A store is created under a temporary name
and renamed into place, so there is never a half-created study; a sequential study's later
waves are added in one transaction each (:meth:`Store.add_wave`).

Damage to the file itself is found before results are read from it: SQLite's
``quick_check`` when it is opened (:func:`refuse_if_damaged`) and the blocks' checksums (or
format 3's chunk checksums) when curves are read; either failing is "damaged", never numbers
computed from it. Stores of format 2 (before the checksums) are read with the integrity
check alone.

A study folder may come from someone else: a store is opened read-only and checked to be a
study store of ours before it is read, and reopened for writing only by a study that runs;
the checkpoint names it holds are checked (:func:`~regspeed.study.files.checkpoint_path`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import itertools
import json
import os
import sqlite3
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from regspeed.errors import ConfigError
from regspeed.safe_text import printable
from regspeed.study import files
from regspeed.study.files import CHECKPOINTS as CHECKPOINTS  # the folder's names, for this module's users
from regspeed.study.files import DATABASE, LOCK

FORMAT_VERSION = 5  # 5: cells; 4: curves as blocks, a SHA-256 each; earlier ones are read, and rewritten on resume
READABLE_FORMATS = ("2", "3", "4", "5")
LONG_FORM_FORMATS = ("2", "3")  # curves a row per value
TABLES = frozenset({"meta", "conditions", "batches", "runs", "metrics"})  # every format's
# each format's own tables
FORMAT_TABLES = {"2": ("curves",), "3": ("curves", "chunks"), "4": ("blocks",), "5": ("blocks", "cells")}
SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's files beside the database
ONE_CELL = "all"  # the label of the one cell of a study without factors, and of every store before format 5

CELLS = """
CREATE TABLE cells (cell_id INTEGER PRIMARY KEY, label TEXT NOT NULL UNIQUE, spec_json TEXT NOT NULL);
"""
CONDITIONS = """
CREATE TABLE {table} (
    condition_id INTEGER PRIMARY KEY,
    cell INTEGER NOT NULL DEFAULT 0 REFERENCES cells,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    strength REAL NOT NULL,
    regularizer TEXT NOT NULL,
    UNIQUE (cell, name)
);
"""  # a template: format 4's is rebuilt as this one under another name (:meth:`Store._add_cells`)
SCHEMA = (
    """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
    + CELLS
    + CONDITIONS.format(table="conditions")
    + """
CREATE TABLE batches (
    batch_id INTEGER PRIMARY KEY,
    condition_ids TEXT NOT NULL,  -- a JSON list of the names of its runs' conditions
    total_updates INTEGER NOT NULL,
    updates_done INTEGER NOT NULL DEFAULT 0,
    checkpoint TEXT,
    wall_seconds REAL NOT NULL DEFAULT 0,
    cell INTEGER NOT NULL DEFAULT 0  -- last: where format 4's gains it (ALTER TABLE ... ADD COLUMN)
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
"""
)
BLOCKS = """
CREATE TABLE blocks (
    metric_id INTEGER NOT NULL,
    batch_id INTEGER NOT NULL,
    updates_done INTEGER NOT NULL,  -- the chunk's end
    count INTEGER NOT NULL,  -- values in the block
    encoding INTEGER NOT NULL,  -- FLOAT64 | SHARED_STEPS
    sha256 BLOB NOT NULL,  -- block_digest
    runs BLOB NOT NULL,  -- run ids, ascending (<i8)
    counts BLOB NOT NULL,  -- values per run (<i4)
    steps BLOB NOT NULL,  -- zlib of the steps' differences (<i8): one run's if SHARED_STEPS, else every value's
    vals BLOB NOT NULL,  -- values run by run, steps ascending (<f4, or <f8 if FLOAT64)
    PRIMARY KEY (metric_id, batch_id, updates_done)  -- one metric of every run is one range scan
) WITHOUT ROWID;
"""
LONG_FORM = """
CREATE TABLE curves (
    metric_id INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    step INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (metric_id, run_id, step)
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
"""  # formats 2 (``curves`` only) and 3: read, and rewritten as blocks when a study resumes
FLOAT64 = 1  # a block's encoding: its values as <f8 (else <f4: each is a float32 exactly)
SHARED_STEPS = 2  # a block's encoding: every run of it has the same steps, stored once
ROW = np.dtype([("run", "<i8"), ("step", "<i8"), ("value", "<f8")])  # a curve row as its chunk's checksum covers it


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    """A run as planned: its condition (a name of its cell's), seed, batch (of its cell) and
    position within the batch, and its cell."""

    condition: str
    seed: int
    batch: int
    position: int
    cell: int = 0


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
    cell: int


@dataclasses.dataclass(frozen=True)
class BatchRow:
    """A batch as stored."""

    batch_id: int
    conditions: list[str]
    total_updates: int
    updates_done: int
    checkpoint: str | None
    wall_seconds: float
    cell: int


@dataclasses.dataclass(frozen=True)
class CellRow:
    """A cell as stored: a combination of the study's factors, with its own validated spec."""

    cell_id: int
    label: str
    spec_json: str


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


# ---------------------------------------------------------------------------- blocks (format 4)

_VALUE_TYPES = (np.dtype("<f4"), np.dtype("<f8"))  # by the FLOAT64 bit of a block's encoding


@dataclasses.dataclass(frozen=True)
class Block:
    """One metric's values of a chunk of a batch, as stored (:func:`encode_block`)."""

    count: int  # values
    encoding: int  # FLOAT64 | SHARED_STEPS
    runs: bytes  # run ids, ascending (<i8)
    counts: bytes  # values per run (<i4)
    steps: bytes  # zlib of the steps' differences (<i8): one run's if SHARED_STEPS, else every value's
    vals: bytes  # values run by run, steps ascending (<f4, or <f8 if FLOAT64)


@dataclasses.dataclass(frozen=True)
class CurveArrays:
    """One metric of every run that has values, as flat arrays: run ``runs[i]`` (ascending)
    has the steps ``steps[offsets[i]:offsets[i + 1]]`` (ascending) and the values
    ``values[offsets[i]:offsets[i + 1]]``; ``axis`` is every step any run recorded, ascending."""

    runs: np.ndarray  # int64
    offsets: np.ndarray  # int64, len(runs) + 1
    steps: np.ndarray  # int64
    values: np.ndarray  # float64, bit for bit as written
    axis: np.ndarray  # int64

    def by_run(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """``run_id -> (steps, values)``, by run id (views of the flat arrays)."""
        bounds = self.offsets.tolist()
        return {
            run: (self.steps[start:end], self.values[start:end])
            for run, start, end in zip(self.runs.tolist(), bounds, bounds[1:], strict=False)
        }


def encode_block(run_ids: np.ndarray, steps: np.ndarray, values: np.ndarray) -> Block:
    """The block of one metric's values of a chunk (in any order; at least one value; a run
    has at most one value per step): sorted by run, then step; the steps delta-coded and
    compressed, once if every run has the same; the values as float32 if every one is a
    float32 exactly (bit for bit: -0.0 stays -0.0), else float64."""
    run_ids = np.asarray(run_ids, np.int64)
    steps = np.asarray(steps, np.int64)
    values = np.ascontiguousarray(values, np.float64)
    if len(run_ids) > 1 and not _ordered(run_ids, steps):
        order = np.lexsort((steps, run_ids))
        run_ids, steps, values = run_ids[order], steps[order], values[order]
    firsts = np.flatnonzero(np.diff(run_ids, prepend=run_ids[0] - 1))
    counts = np.diff(np.append(firsts, len(run_ids)))
    later = np.ones(len(run_ids), bool)
    later[firsts] = False  # a value after another of its run
    if (np.diff(steps, prepend=0)[later] <= 0).any():
        raise ValueError("a run has two values at one step")
    width = int(counts[0])
    shared = bool((counts == width).all()) and bool((steps.reshape(-1, width) == steps[:width]).all())
    stored = steps[:width] if shared else steps
    with np.errstate(over="ignore", invalid="ignore"):  # a value that is not a float32 stays float64
        single = values.astype("<f4")
    exact = np.array_equal(single.astype(np.float64).view(np.uint64), values.view(np.uint64))
    return Block(
        count=len(values),
        encoding=(0 if exact else FLOAT64) | (SHARED_STEPS if shared else 0),
        runs=run_ids[firsts].astype("<i8").tobytes(),
        counts=counts.astype("<i4").tobytes(),
        steps=zlib.compress(np.diff(stored, prepend=0).astype("<i8").tobytes(), 1),
        vals=(single if exact else values.astype("<f8")).tobytes(),
    )


def _ordered(run_ids: np.ndarray, steps: np.ndarray) -> bool:
    """Whether values are sorted by run, then step (the order the runner gives them in)."""
    runs_step = np.diff(run_ids)
    return bool((runs_step >= 0).all()) and bool(((runs_step > 0) | (np.diff(steps) > 0)).all())


def block_digest(metric: str, batch: int, updates_done: int, block: Block) -> bytes:
    """The SHA-256 a block is stored with: over the metric's name, the block's key (batch and
    chunk end), its count and encoding, and every blob with its length."""
    blobs = (block.runs, block.counts, block.steps, block.vals)
    hasher = hashlib.sha256(metric.encode() + b"\0")
    hasher.update(struct.pack("<8q", batch, updates_done, block.count, block.encoding, *map(len, blobs)))
    for blob in blobs:
        hasher.update(blob)
    return hasher.digest()


class _Decoded(NamedTuple):
    """A block as read: its values as stored (float32 or float64), its steps one run's if shared."""

    batch: int
    runs: np.ndarray
    counts: np.ndarray
    steps: np.ndarray
    values: np.ndarray
    shared: bool


def _decode_block(metric: str, row: tuple, decoded_steps: dict[bytes, np.ndarray]) -> _Decoded:
    """A block as read (``batch, updates_done, count, encoding, sha256, runs, counts, steps,
    vals``), verified against its checksum and checked to fit together. Raises
    :class:`_DamagedBlockError` saying why it cannot be read."""
    batch, updates_done, count, encoding, digest, *blobs = row
    where = f"the chunk of batch {batch} ending at update {updates_done}"
    try:
        block = Block(int(count), int(encoding), *(_blob(blob) for blob in blobs))
        if block_digest(metric, int(batch), int(updates_done), block) != digest:
            raise _DamagedBlockError(f"the {metric} values of {where} differ from those written")
        runs = np.frombuffer(block.runs, "<i8")
        counts = np.frombuffer(block.counts, "<i4")
        values = np.frombuffer(block.vals, _VALUE_TYPES[block.encoding & FLOAT64])
        shared = bool(block.encoding & SHARED_STEPS)
        steps = decoded_steps.get(block.steps)
        if steps is None:
            steps = np.cumsum(np.frombuffer(zlib.decompress(block.steps), "<i8"), dtype=np.int64)
            decoded_steps[block.steps] = steps
        problem = (
            "its encoding is unknown"
            if block.encoding & ~(FLOAT64 | SHARED_STEPS)
            else "its parts do not fit together"
            if len(runs) != len(counts)
            or len(values) != block.count
            or (counts <= 0).any()
            or int(counts.sum(dtype=np.int64)) != block.count
            or (shared and (counts != len(steps)).any())
            or (not shared and len(steps) != block.count)
            or (np.diff(runs) <= 0).any()
            else None
        )
    except _DamagedBlockError:
        raise
    except (ValueError, TypeError, OverflowError, struct.error, zlib.error) as error:
        problem = f"its columns are not a block's ({printable(str(error))[:120]})"
    if problem is not None:
        raise _DamagedBlockError(f"the {metric} values of {where} cannot be read: {problem}")
    return _Decoded(int(batch), runs, counts.astype(np.int64), steps, values, shared)


def _blob(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"a {type(value).__name__} where a blob belongs")
    return value


class _DamagedBlockError(Exception):
    """A block that is not what was written (its message says which and why)."""


def _joined(metric: str, parts: list[_Decoded]) -> CurveArrays:
    """The decoded blocks of a metric, in key order (batch, then chunk), as :class:`CurveArrays`:
    each run's values gathered from its batch's chunks, in chunk order. A batch whose chunks
    each give every run of it the same number of values (the usual case) is copied as a
    table, run by chunk; any other is gathered value by value."""
    total = sum(len(part.values) for part in parts)
    steps = np.empty(total, np.int64)
    values = np.empty(total, np.float64)
    run_ids, run_counts, axis = [], [], []
    position = 0
    for _, batch in itertools.groupby(parts, key=lambda part: part.batch):
        batch_parts = list(batch)
        runs = batch_parts[0].runs
        size = sum(len(part.values) for part in batch_parts)
        into = slice(position, position + size)
        if all(np.array_equal(part.runs, runs) and (part.counts == part.counts[0]).all() for part in batch_parts):
            step_table = steps[into].reshape(len(runs), -1)
            value_table = values[into].reshape(len(runs), -1)
            column = 0
            for part in batch_parts:
                width = int(part.counts[0])
                value_table[:, column : column + width] = part.values.reshape(len(runs), width)
                step_table[:, column : column + width] = part.steps if part.shared else part.steps.reshape(-1, width)
                column += width
            if all(part.shared for part in batch_parts):
                axis.append(step_table[0])
                increasing = bool((np.diff(step_table[0]) > 0).all())
            else:
                axis.append(step_table.ravel())
                increasing = bool((np.diff(step_table, axis=1) > 0).all())
            run_ids.append(runs)
            run_counts.append(np.full(len(runs), column, np.int64))
        else:
            segment_runs = np.concatenate([part.runs for part in batch_parts])
            segment_counts = np.concatenate([part.counts for part in batch_parts])
            batch_steps = np.concatenate([np.tile(p.steps, len(p.runs)) if p.shared else p.steps for p in batch_parts])
            batch_values = np.concatenate([part.values for part in batch_parts])
            order = np.argsort(segment_runs, kind="stable")  # a run's chunks stay in order
            sources = (np.cumsum(segment_counts) - segment_counts)[order]
            segment_runs, segment_counts = segment_runs[order], segment_counts[order]
            targets = np.cumsum(segment_counts) - segment_counts
            gather = np.repeat(sources - targets, segment_counts) + np.arange(size)
            steps[into], values[into] = batch_steps[gather], batch_values[gather]
            firsts = np.flatnonzero(np.diff(segment_runs, prepend=segment_runs[0] - 1))
            run_ids.append(segment_runs[firsts])
            run_counts.append(np.add.reduceat(segment_counts, firsts))
            axis.append(batch_steps)
            later = np.ones(size, bool)
            later[np.cumsum(run_counts[-1]) - run_counts[-1]] = False
            increasing = bool((np.diff(steps[into])[later[1:]] > 0).all())
        if not increasing:  # chunks of a batch that overlap: never written so
            raise _DamagedBlockError(f"the {metric} values of a run of batch {batch_parts[0].batch} overlap")
        position += size
    runs = np.concatenate(run_ids) if run_ids else np.zeros(0, np.int64)
    counts = np.concatenate(run_counts) if run_counts else np.zeros(0, np.int64)
    if (np.diff(runs) <= 0).any():  # batches whose run ids interleave: by run id
        order = np.argsort(runs, kind="stable")
        if (np.diff(runs[order]) == 0).any():
            raise _DamagedBlockError(f"a run has {metric} values in two batches")
        sources = (np.cumsum(counts) - counts)[order]
        runs, counts = runs[order], counts[order]
        gather = np.repeat(sources - (np.cumsum(counts) - counts), counts) + np.arange(total)
        steps, values = steps[gather], values[gather]
    offsets = np.zeros(len(runs) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return CurveArrays(runs, offsets, steps, values, np.unique(np.concatenate(axis)) if axis else steps)


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
            f"{path} has store format {meta['format_version']!r}, this regspeed reads "
            f"{', '.join(READABLE_FORMATS[:-1])} and {READABLE_FORMATS[-1]}",
        )
    if missing := sorted(set(FORMAT_TABLES[meta["format_version"]]) - tables):
        raise _not_a_study(path, missing)
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
    about 40% more, and the curves, nearly all of the file, have no separate index). Their
    values are covered by the blocks' (or format 3's chunks') checksums (:meth:`Store.curve_arrays`)."""
    try:
        found = [message for (message,) in connection.execute("PRAGMA quick_check(1)")]
    except sqlite3.DatabaseError as error:
        raise files.damaged(folder, f"SQLite cannot read {DATABASE} ({error})") from None
    if found != ["ok"]:
        raise files.damaged(folder, f"SQLite's check of {DATABASE} failed ({printable(found[0])[:160]})")


# (name, kind, strength, regularizer JSON[, cell]), as Store.create takes a condition
PlannedCondition = tuple[str, str, float, str] | tuple[str, str, float, str, int]
PlannedBatch = tuple[list[str], int] | tuple[list[str], int, int]  # (condition names, total updates[, cell])


def _with_cell(row: tuple, width: int) -> tuple:
    """A planned row of ``width`` fields and an optional cell, with its cell (0 if left out) last."""
    if len(row) not in (width, width + 1):
        raise ValueError(f"{row!r} has {len(row)} fields, not {width} and an optional cell")
    return tuple(row) if len(row) > width else (*row, 0)


def _check_cells(cells: list[tuple[str, str]], conditions: list[tuple]) -> None:
    """Refuse cells whose spec is not a JSON object, and conditions (with their cells, last) of
    a cell the study does not have or not given cell by cell (so that condition ids, which order
    the runs, are cell-major)."""
    for label, spec_json in cells:
        if not isinstance(_json_or_none(spec_json), dict):
            raise ValueError(f"the spec of cell {label!r} is not a JSON object")
    condition_cells = [row[-1] for row in conditions]
    if unknown := sorted(set(condition_cells) - set(range(len(cells)))):
        raise ValueError(f"conditions of cells {unknown}, which the study does not have (it has {len(cells)})")
    if condition_cells != sorted(condition_cells):
        raise ValueError("conditions are given cell by cell")


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None


def _insert_plan(
    connection: sqlite3.Connection, first: int, batches: list[PlannedBatch], runs: list[PlannedRun]
) -> None:
    """Insert planned batches, numbered from ``first``, and their runs (pending), inside the
    caller's transaction. A batch's cell is one of the study's and its conditions are
    conditions of some cell; a run is of a condition of its cell, of one of the new batches
    and of one of that batch's conditions; a batch's first run is of the batch's cell."""
    cells = {cell for (cell,) in connection.execute("SELECT cell_id FROM cells")}
    ids = {
        (cell, name): id_ for cell, name, id_ in connection.execute("SELECT cell, name, condition_id FROM conditions")
    }
    known = {name for _, name in ids}
    planned = {}
    for index, batch in enumerate(batches, start=first):
        names, total, cell = _with_cell(batch, 2)
        if cell not in cells:
            raise ValueError(f"batch {index} is of cell {cell}, which the study does not have")
        if unknown := [name for name in names if name not in known]:
            raise ValueError(f"batch {index} names conditions {unknown} that no cell has")
        planned[index] = (list(names), total, cell)
    held: dict[int, set[str]] = {index: set() for index in planned}
    for run in runs:
        names, _, cell = planned.get(run.batch, ([], 0, None))
        if (run.cell, run.condition) not in ids or run.condition not in names:
            raise ValueError(f"{run} is not of a condition of its cell in a new batch naming it")
        if run.position == 0 and run.cell != cell:
            raise ValueError(f"{run} is the first of batch {run.batch} but not of its cell {cell}")
        held[run.batch].add(run.condition)
    firsts = {run.batch for run in runs if run.position == 0}
    for index, (names, _, _) in planned.items():
        if set(names) != held[index] or index not in firsts:
            raise ValueError(f"batch {index} names conditions {sorted(names)} but its runs are of "
                             f"{sorted(held[index])}, or it has no first run (position 0)")  # fmt: skip
    connection.executemany(
        "INSERT INTO batches (batch_id, condition_ids, total_updates, cell) VALUES (?, ?, ?, ?)",
        [(index, json.dumps(names), total, cell) for index, (names, total, cell) in planned.items()],
    )
    connection.executemany(
        "INSERT INTO runs (condition_id, seed, batch_id, position) VALUES (?, ?, ?, ?)",
        [(ids[(run.cell, run.condition)], run.seed, run.batch, run.position) for run in runs],
    )


class Store:
    """An open study store. Use :meth:`create` or :meth:`open`, as a context manager
    (``with Store.open(folder) as store: ...``) or closing it with :meth:`close`."""

    def __init__(self, folder: Path, connection: sqlite3.Connection) -> None:
        self.folder = folder
        self.connection = connection
        self._metric_ids: dict[str, int] = dict(connection.execute("SELECT name, metric_id FROM metrics"))
        (version,) = connection.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
        self.format_version = str(version)
        self.checksummed = version != "2"  # format 2 has no chunks table: its curves are read unverified
        self._has_cells = int(version) >= 5  # before: one cell, which the tables do not name
        self._intact = False  # refuse_if_damaged passed

    # ------------------------------------------------------------------ creation, opening

    @classmethod
    def create(
        cls,
        folder: Path,
        meta: dict[str, str],
        conditions: list[PlannedCondition],
        batches: list[PlannedBatch],
        runs: list[PlannedRun],
        cells: list[tuple[str, str]] | None = None,
    ) -> Store:
        """Write a new store (atomically). ``cells``: (label, spec JSON), numbered from 0; by
        default one, :data:`ONE_CELL`, of the study's spec (``meta["spec_json"]``).
        ``conditions``: (name, kind, strength, regularizer JSON[, cell]), cell by cell, a name
        once per cell; ``batches``: (condition names, total updates[, cell]), numbered from 0;
        a cell left out is 0. ``runs`` name their batches and their conditions within their cell."""
        cell_rows = [(ONE_CELL, meta["spec_json"])] if cells is None else [tuple(cell) for cell in cells]
        condition_rows = [_with_cell(row, 4) for row in conditions]
        _check_cells(cell_rows, condition_rows)
        folder.mkdir(parents=True, exist_ok=True)
        final = folder / DATABASE
        partial = folder / (DATABASE + files.PARTIAL)
        files.remove_leftover(partial.with_name(partial.name + "-journal"), "study")
        os.close(files.create_new(partial, "study"))  # an empty file is an empty database
        try:
            with contextlib.closing(sqlite3.connect(partial)) as connection, connection:
                connection.executescript(SCHEMA + BLOCKS)
                connection.executemany(
                    "INSERT INTO meta VALUES (?, ?)",
                    sorted((meta | {"format_version": str(FORMAT_VERSION)}).items()),
                )
                connection.executemany("INSERT INTO cells VALUES (?, ?, ?)", [(i, *c) for i, c in enumerate(cell_rows)])
                connection.executemany(
                    "INSERT INTO conditions (name, kind, strength, regularizer, cell) VALUES (?, ?, ?, ?, ?)",
                    condition_rows,
                )
                _insert_plan(connection, 0, batches, runs)
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
        is a clear error and is left as it was. A store of an earlier format opened for
        writing is rewritten as this one first, in one transaction (:meth:`_migrate`).
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
        except BaseException as error:
            if connection is not None:
                connection.close()
            if isinstance(error, sqlite3.DatabaseError):
                raise ConfigError("study", f"{path} is damaged or not a regspeed study store ({error})") from None
            raise
        if writable and store.format_version != str(FORMAT_VERSION):
            try:
                store._migrate()
            except BaseException as error:
                store.close()
                if isinstance(error, sqlite3.DatabaseError) and not isinstance(error, sqlite3.OperationalError):
                    raise files.damaged(folder, f"SQLite cannot read {DATABASE} ({error})") from None
                raise  # a folder that cannot take the writes: the caller says so (files.writing_into)
        return store

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

    def cells(self) -> list[CellRow]:
        """The study's cells by id; a store before format 5 has one, :data:`ONE_CELL`, of the
        study's spec."""
        if not self._has_cells:
            (spec_json,) = self.connection.execute("SELECT value FROM meta WHERE key = 'spec_json'").fetchone()
            return [CellRow(0, ONE_CELL, spec_json)]
        rows = self.connection.execute("SELECT cell_id, label, spec_json FROM cells ORDER BY cell_id").fetchall()
        return [CellRow(*row) for row in rows]

    def conditions(self) -> list[dict[str, Any]]:
        """Conditions in study order (cell by cell): name, kind, strength, regularizer (dict), cell."""
        rows = self.connection.execute(
            f"SELECT name, kind, strength, regularizer, {self._cell('conditions')} FROM conditions "
            "ORDER BY condition_id"
        ).fetchall()
        return [
            {"name": name, "kind": kind, "strength": strength, "regularizer": json.loads(regularizer), "cell": cell}
            for name, kind, strength, regularizer, cell in rows
        ]

    def runs(self) -> list[RunRow]:
        """All runs, ordered by cell, condition (in study order) and seed."""
        rows = self.connection.execute(
            f"""SELECT run_id, conditions.name, seed, batch_id, position, status, updates_done, wall_seconds, error,
                       {self._cell("conditions")}
                FROM runs JOIN conditions USING (condition_id) ORDER BY condition_id, seed"""
        ).fetchall()
        return [RunRow(*row) for row in rows]

    def batches(self) -> list[BatchRow]:
        """All batches in plan order; a checkpoint name that is not one of ours is a damaged study."""
        rows = self.connection.execute(
            "SELECT batch_id, condition_ids, total_updates, updates_done, checkpoint, wall_seconds, "
            f"{self._cell('batches')} FROM batches ORDER BY batch_id"
        ).fetchall()
        for row in rows:
            if row[4] is not None:
                files.checkpoint_path(self.folder, row[4])  # refuses a name leading anywhere but our checkpoints
        return [BatchRow(b, json.loads(c), t, u, ck, w, cell) for b, c, t, u, ck, w, cell in rows]

    def _cell(self, table: str) -> str:
        """The SQL of the cell of a row of ``table``: its column, or 0 before format 5 (one cell)."""
        return f"{table}.cell" if self._has_cells else "0"

    def metric_names(self) -> list[str]:
        """Metrics that have values."""
        return sorted(self._metric_ids)

    def check_integrity(self) -> None:
        """:func:`refuse_if_damaged`, unless this store has passed it (:meth:`open` runs it)."""
        if not self._intact:
            refuse_if_damaged(self.connection, self.folder)
            self._intact = True

    def curve(self, metric: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """``run_id -> (steps, values)`` of one metric, by run id, steps ascending: the
        :meth:`curve_arrays` of every run that has values."""
        return self.curve_arrays(metric).by_run()

    def curve_arrays(self, metric: str) -> CurveArrays:
        """One metric of every run as flat arrays, verified against the blocks' checksums (format
        3: its chunks', format 2: none) after the file's integrity check. A metric with no
        values has none."""
        self.check_integrity()
        metric_id = self._metric_ids.get(metric)
        if metric_id is None:
            empty = np.zeros(0, np.int64)
            return CurveArrays(empty, np.zeros(1, np.int64), empty, np.zeros(0), empty)
        if self.format_version in LONG_FORM_FORMATS:
            rows = self._long_form_rows(metric, metric_id)
            run_ids, steps = rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64)
            firsts = np.flatnonzero(np.diff(run_ids, prepend=-1))
            offsets = np.append(firsts, len(run_ids)).astype(np.int64)
            return CurveArrays(run_ids[firsts], offsets, steps, np.ascontiguousarray(rows[:, 2]), np.unique(steps))
        try:
            rows = self.connection.execute(
                "SELECT batch_id, updates_done, count, encoding, sha256, runs, counts, steps, vals FROM blocks "
                "WHERE metric_id = ? ORDER BY batch_id, updates_done",
                (metric_id,),
            ).fetchall()
        except sqlite3.DatabaseError as error:
            raise files.damaged(self.folder, f"its {metric} curves cannot be read ({error})") from None
        decoded_steps: dict[bytes, np.ndarray] = {}
        try:
            return _joined(metric, [_decode_block(metric, row, decoded_steps) for row in rows])
        except _DamagedBlockError as damage:
            raise files.damaged(self.folder, f"{DATABASE} does not match its checksums: {damage}") from None

    def _long_form_rows(self, metric: str, metric_id: int) -> np.ndarray:
        """Formats 2 and 3: one metric's ``curves`` rows ``[run, step, value]`` (floats) by run,
        then step, verified against format 3's chunk checksums."""
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
        return rows

    def _verify(self, metric: str, metric_id: int, rows: np.ndarray) -> None:
        """Format 3: refuse curve rows of ``metric`` that do not match their chunks' checksums."""
        problem = chunk_problem(metric, row_table(rows[:, 0], rows[:, 1], rows[:, 2]), *self._chunks(metric_id))
        if problem is not None:
            raise files.damaged(self.folder, f"{DATABASE} does not match its checksums: {problem}")

    def _chunks(self, metric_id: int) -> tuple[dict[int, int], list[tuple[int, int, int, int, int, bytes]]]:
        """Format 3: the batch of every run, and a metric's chunks as :func:`chunk_problem` takes them."""
        chunks = self.connection.execute(
            "SELECT batch_id, updates_done, first_step, last_step, rows, sha256 FROM chunks WHERE metric_id = ? "
            "ORDER BY batch_id, last_step",
            (metric_id,),
        ).fetchall()
        return dict(self.connection.execute("SELECT run_id, batch_id FROM runs")), chunks

    def _migrate(self) -> None:
        """One transaction: a store of an earlier format rewritten as this one (formats 2 and 3:
        :meth:`_rewrite_as_blocks`, then as format 4: :meth:`_add_cells`). Whatever stops it
        (damage found, a full disk, a crash) leaves the store as it was."""
        with self.connection:
            self.connection.execute("BEGIN")
            if self.format_version in LONG_FORM_FORMATS:
                self._rewrite_as_blocks()
            self._add_cells()
            self.connection.execute("UPDATE meta SET value = ? WHERE key = 'format_version'", (str(FORMAT_VERSION),))
        self.format_version, self.checksummed, self._has_cells = str(FORMAT_VERSION), True, True

    def _add_cells(self) -> None:
        """Format 4's tables as format 5's, inside the caller's transaction: one cell (0,
        :data:`ONE_CELL`, the study's spec) that every condition and batch is of; ``conditions``
        rebuilt (a name unique within its cell), its condition ids kept."""
        execute = self.connection.execute
        (spec_json,) = execute("SELECT value FROM meta WHERE key = 'spec_json'").fetchone()
        execute(CELLS)
        execute("INSERT INTO cells VALUES (0, ?, ?)", (ONE_CELL, spec_json))
        execute(CONDITIONS.format(table="conditions_new"))
        execute(
            "INSERT INTO conditions_new (condition_id, cell, name, kind, strength, regularizer) "
            "SELECT condition_id, 0, name, kind, strength, regularizer FROM conditions"
        )
        # SQLite's way to change a table's constraints: the new one is renamed once the old is
        # dropped (renaming the old one first would make ``runs`` reference it by its new name)
        execute("DROP TABLE conditions")
        execute("ALTER TABLE conditions_new RENAME TO conditions")
        execute("ALTER TABLE batches ADD COLUMN cell INTEGER NOT NULL DEFAULT 0")

    def _rewrite_as_blocks(self) -> None:
        """A store of format 2 or 3 (long form) rewritten as format 4, inside the caller's
        transaction: its curves read (format 3: verified against their checksums) and written
        as blocks, one per chunk of a batch and metric (format 2, which does not know its
        chunks: one per batch and metric, at the batch's progress), the long-form tables dropped."""
        batch_of_run = dict(self.connection.execute("SELECT run_id, batch_id FROM runs"))
        progress = dict(self.connection.execute("SELECT batch_id, updates_done FROM batches"))
        lookup = np.full(max(batch_of_run, default=0) + 1, -1, np.int64)
        lookup[list(batch_of_run)] = list(batch_of_run.values())
        self.connection.execute(BLOCKS)
        for name, metric_id in sorted(self._metric_ids.items()):
            rows = self._long_form_rows(name, metric_id)
            run_ids, steps, values = rows[:, 0].astype(np.int64), rows[:, 1].astype(np.int64), rows[:, 2]
            batches = lookup[np.clip(run_ids, 0, len(lookup) - 1)]
            if ((run_ids >= len(lookup)) | (batches < 0)).any():
                raise files.damaged(self.folder, f"its {name} curves name a run it does not have")
            if self.format_version == "3":
                ends = self._chunk_ends(metric_id, batches, steps)
            else:
                ends = np.asarray([progress[batch] for batch in batches.tolist()], np.int64)
            order = np.lexsort((steps, run_ids, ends, batches))
            keys = np.stack([batches[order], ends[order]], axis=1)
            cuts = np.flatnonzero((np.diff(keys, axis=0) != 0).any(axis=1)) + 1
            for part in np.split(order, cuts) if len(order) else []:
                self._insert_block(
                    name,
                    metric_id,
                    int(batches[part[0]]),
                    int(ends[part[0]]),
                    run_ids[part],
                    steps[part],
                    values[part],
                )
        self.connection.execute("DROP TABLE curves")
        self.connection.execute("DROP TABLE IF EXISTS chunks")

    def _chunk_ends(self, metric_id: int, batches: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Format 3: the end (updates done) of the chunk that wrote each row (its batch's chunk
        whose steps cover the row's; rows verified to have one)."""
        _, chunks = self._chunks(metric_id)
        if not chunks:
            return np.zeros(len(steps), np.int64)
        chunk_batches, ends, _, lasts = (np.asarray(column, np.int64) for column in list(zip(*chunks, strict=True))[:4])
        lowest = min(int(lasts.min()), int(steps.min(initial=0)))
        span = max(int(lasts.max()), int(steps.max(initial=0))) - lowest + 1
        keys = chunk_batches * span + (lasts - lowest)  # ascending: by batch, then last step
        return ends[np.searchsorted(keys, batches * span + (steps - lowest))]

    # ------------------------------------------------------------------------ writing

    def add_wave(self, batches: list[PlannedBatch], runs: list[PlannedRun], meta: dict[str, str]) -> None:
        """One transaction: a sequential study's next wave. ``batches`` (condition names, total
        updates[, cell], as :meth:`create` takes them) are numbered on from the stored ones,
        ``runs`` name those numbers, and the ``meta`` facts given (the plan's) replace their
        stored values."""
        self._refuse_unless_current()
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
        only (a run at most one value per step), stored as one block per metric that has
        values; ``live_positions``: runs that were still running through this chunk."""
        self._refuse_unless_current()
        run_ids = dict(self.connection.execute("SELECT position, run_id FROM runs WHERE batch_id = ?", (batch_id,)))
        of_position = np.full(max(run_ids, default=0) + 1, -1, np.int64)
        of_position[list(run_ids)] = list(run_ids.values())
        now = time.time()
        with self.connection:
            for name, (positions, steps, values) in curves.items():
                metric_id = self._metric_id(name)
                if len(positions):
                    ids = of_position[np.asarray(positions, np.int64)]
                    if (ids < 0).any():
                        raise ValueError(f"{name} has values at a position that batch {batch_id} does not have")
                    self._insert_block(name, metric_id, batch_id, updates_done, ids, steps, values)
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

    def _insert_block(
        self,
        name: str,
        metric_id: int,
        batch_id: int,
        updates_done: int,
        run_ids: np.ndarray,
        steps: np.ndarray,
        values: np.ndarray,
    ) -> None:
        """Store one metric's values of a chunk as its block, inside the caller's transaction."""
        block = encode_block(run_ids, steps, values)
        self.connection.execute(
            "INSERT INTO blocks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                metric_id,
                batch_id,
                updates_done,
                block.count,
                block.encoding,
                block_digest(name, batch_id, updates_done, block),
                block.runs,
                block.counts,
                block.steps,
                block.vals,
            ),
        )

    def _refuse_unless_current(self) -> None:
        if self.format_version != str(FORMAT_VERSION):  # opened writable, a store is rewritten first
            raise ValueError(f"a store of format {self.format_version} is written only once rewritten (writable)")

    def restart_batch(self, batch_id: int) -> None:
        """One transaction: the batch's blocks are removed and its runs and progress reset
        (pending, no checkpoint), so that it reruns from scratch as if it had never started."""
        self._refuse_unless_current()
        with self.connection:
            self.connection.execute("DELETE FROM blocks WHERE batch_id = ?", (batch_id,))
            self.connection.execute(
                "UPDATE runs SET status = 'pending', updates_done = 0, started = NULL, finished = NULL, "
                "wall_seconds = 0, error = NULL WHERE batch_id = ?",
                (batch_id,),
            )
            self.connection.execute(
                "UPDATE batches SET updates_done = 0, checkpoint = NULL, wall_seconds = 0 WHERE batch_id = ?",
                (batch_id,),
            )
