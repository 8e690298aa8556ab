"""Live curves: every stored chunk's points as TensorBoard event files, so that
``tensorboard --logdir FOLDER`` shows a study (or ``regspeed train``) while it runs.

- **Layout.** One folder per run below ``FOLDER/tensorboard``: ``<condition>/seed-<s>`` in a
  study (TensorBoard's run name), ``seed-<s>`` for ``regspeed train``. Names come from a
  store that may be someone else's, so they are reduced to safe characters
  (:func:`folder_name`).
- **Points.** Exactly what the store records (finite values of the runs still alive), one
  scalar per metric, tagged ``eval/<name>`` for an evaluation metric (``eval_score`` ->
  ``eval/score``) and ``train/<name>`` for a per-update one (:func:`tag`); the step is the
  store's (env steps, or updates for a supervised task). One event per step holds every
  metric at that step.
- **When.** After the chunk's transaction has committed: the store is the truth, the event
  files a view of it. A process killed between the commit and the write loses that chunk's
  points in TensorBoard (never in the store). Each process appends a new event file to a
  run's folder, named to sort after the earlier ones (TensorBoard reads them in name
  order); a resumed study never recomputes a committed chunk, so no step is written twice.
  A batch that restarts from scratch first has its runs' event files removed
  (:meth:`Board.forget`), as ``regspeed train`` does when it starts a run afresh.
- **Safety.** Every folder below ``FOLDER`` is opened relative to its parent's descriptor
  without following links, and event files are created exclusively (``O_EXCL |
  O_NOFOLLOW``): a link (or a file) planted at ``tensorboard`` or below is refused with one
  :class:`~regspeed.errors.ConfigError`, and nothing outside ``FOLDER`` is ever written.
- **Format.** TensorBoard's event file format (TFRecord framing of ``Event`` protocol
  buffers), encoded here with NumPy a chunk at a time (see "the event file format" below):
  neither TensorFlow nor the ``tensorboard`` package is needed to write, only to read.
  Writes are synchronous, one ``write`` per run and chunk, so there is nothing to flush.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import re
import stat
import struct
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from regspeed.errors import ConfigError

TENSORBOARD = "tensorboard"  # the folder below a study's (or a training run's) folder
FIELD = "tensorboard"  # what a refusal names (the --no-tensorboard option turns it off)
EVALUATION_PREFIX = "eval_"  # evaluation metrics' names start with it (every learner's convention)

# events.out.tfevents.<seconds>.<sequence>.regspeed: TensorBoard reads files whose name holds
# "tfevents", in name order; ours sort by (seconds, sequence), both never decreasing
EVENT_FILE = re.compile(r"events\.out\.tfevents\.(?P<seconds>[0-9]{10,})\.(?P<sequence>[0-9]{6,})\.regspeed")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.@+=,\[\]-]{1,100}")  # condition names such as l1[policy]@1e-05
_UNSAFE_CHARACTER = re.compile(r"[^A-Za-z0-9_.@+=,\[\]-]")
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_IN_THE_WAY = "remove it (or run without TensorBoard: --no-tensorboard)"
_NOT_THROUGH_LINKS = f"regspeed does not write through links: {_IN_THE_WAY}"

Curves = Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # metric -> (positions, steps, values)


def tag(metric: str) -> str:
    """A metric's TensorBoard tag: ``eval/<name>`` for an evaluation metric (``eval_score``
    -> ``eval/score``), ``train/<name>`` for a per-update one (``score`` -> ``train/score``)."""
    if metric.startswith(EVALUATION_PREFIX):
        return "eval/" + metric.removeprefix(EVALUATION_PREFIX)
    return "train/" + metric


def folder_name(name: str) -> str:
    """``name`` as one safe folder name: kept if it is short and made of letters, digits and
    ``_ . @ + = , [ ] -`` (and not only dots); otherwise its safe characters (others as
    ``_``) and a hash of the whole name, so that different names stay apart."""
    if _SAFE_NAME.fullmatch(name) and name.strip("."):
        return name
    kept = _UNSAFE_CHARACTER.sub("_", name)[:60].strip(".") or "_"
    return f"{kept}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"


def run_folder(seed: int, condition: str | None = None) -> tuple[str, ...]:
    """The folders of a run below ``tensorboard``: ``(<condition>, seed-<s>)`` in a study,
    ``(seed-<s>,)`` for ``regspeed train``; each made safe by :func:`folder_name`."""
    seed_folder = folder_name(f"seed-{int(seed)}")
    return (seed_folder,) if condition is None else (folder_name(condition), seed_folder)


def write(writers: Mapping[int, RunWriter], curves: Curves) -> None:
    """Append a chunk's curves (as the store records them) to the writers of its runs, by
    position in the batch (one write each); runs without a writer are skipped."""
    for position, records in encode(curves, time.time()).items():
        if position in writers:
            writers[position].write(records)


# ------------------------------------------------------------------ the event file format
#
# An event file is a sequence of records: the length as 8 bytes (little-endian), its masked
# CRC-32C, the data, the data's masked CRC-32C. Each record's data is an ``Event``
# protocol buffer; ours hold ``wall_time`` (field 1, double), ``step`` (2, varint) and a
# ``summary`` (5) of ``Value``s, each a ``tag`` (1, string) and a ``simple_value`` (2, float32),
# or, first in a file, ``file_version`` (3, string). TensorBoard's own ``RecordWriter``
# computes CRC-32C in pure Python (about 100 us per event: it tripled the wall time of
# examples/linreg.toml, 3.3 s -> 12 s), so both are written here with NumPy, a chunk at a
# time. tests/test_tensorboard.py checks them against the tensorboard package's protos and
# checksum and reads them back with its EventAccumulator.

FILE_VERSION = b"brain.Event:2"
_CASTAGNOLI = 0x82F63B78  # CRC-32C's polynomial, reflected
_MASK_DELTA = 0xA282EAD8  # TFRecord's checksum mask
_ROWS_AT_ONCE = 4096  # records checksummed together (bounds the memory of the gather)


def _crc_table() -> np.ndarray:
    """CRC-32C's byte table (reflected)."""
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(_CASTAGNOLI), table >> 1).astype(np.uint32)
    return table


_CRC_TABLE = _crc_table()


@functools.lru_cache(maxsize=64)
def _crc_tables(length: int) -> tuple[np.ndarray, int]:
    """CRC-32C of ``length`` bytes is affine in them: the tables ``[length, 256]`` of what
    each byte value contributes at each position (the contributions are XORed), and the CRC
    of ``length`` zero bytes."""
    tables = np.empty((length, 256), np.uint32)
    state = _CRC_TABLE  # a byte alone at the end; zero bytes after it shift it through
    for position in range(length - 1, -1, -1):
        tables[position] = state
        state = _CRC_TABLE[state & 0xFF] ^ (state >> 8)
    table, zeros = _CRC_TABLE.tolist(), 0xFFFFFFFF
    for _ in range(length):
        zeros = table[zeros & 0xFF] ^ (zeros >> 8)
    return tables, zeros ^ 0xFFFFFFFF


def masked_crc32c(rows: np.ndarray) -> np.ndarray:
    """TFRecord's masked CRC-32C of each row of a ``uint8`` matrix ``[n, length]``, as
    ``uint32`` (:func:`_crc_tables`: one gather and one XOR-reduction per row)."""
    tables, zeros = _crc_tables(rows.shape[1])
    where = np.arange(rows.shape[1])
    crc = np.empty(len(rows), np.uint64)
    for start in range(0, len(rows), _ROWS_AT_ONCE):
        part = rows[start : start + _ROWS_AT_ONCE]
        crc[start : start + len(part)] = np.bitwise_xor.reduce(tables[where, part], axis=1) ^ np.uint32(zeros)
    rotated = ((crc >> np.uint64(15)) | (crc << np.uint64(17))) & np.uint64(0xFFFFFFFF)
    return ((rotated + np.uint64(_MASK_DELTA)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _framed(data: np.ndarray) -> np.ndarray:
    """Records ``[n, 12 + length + 4]`` of the rows of ``data`` (``uint8``, ``[n, length]``)."""
    count, length = data.shape
    header = np.frombuffer(struct.pack("<Q", length), np.uint8)
    records = np.empty((count, 12 + length + 4), np.uint8)
    records[:, :8] = header
    records[:, 8:12] = masked_crc32c(header[None]).astype("<u4").view(np.uint8)
    records[:, 12:-4] = data
    records[:, -4:] = masked_crc32c(data).astype("<u4").view(np.uint8).reshape(count, 4)
    return records


def _varint(value: int) -> bytes:
    """A protocol buffer varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out) + bytes([value])


def _varint_lengths(values: np.ndarray) -> np.ndarray:
    """Bytes of each value's varint (negative int64 as their 64-bit two's complement: 10)."""
    unsigned = values.astype(np.int64).view(np.uint64)
    return 1 + sum((unsigned >= np.uint64(1 << (7 * i))).astype(np.int64) for i in range(1, 10))


def _varints(values: np.ndarray, length: int) -> np.ndarray:
    """The varints ``[n, length]`` of values that all take ``length`` bytes."""
    unsigned = values.astype(np.int64).view(np.uint64)
    shifted = [(unsigned >> np.uint64(7 * i)) & np.uint64(0x7F) for i in range(length)]
    more = [np.uint64(0x80 if i < length - 1 else 0) for i in range(length)]
    return np.stack([part | flag for part, flag in zip(shifted, more, strict=True)], axis=1).astype(np.uint8)


@functools.lru_cache(maxsize=4096)
def _value_prefix(name: str) -> bytes:
    """A ``Summary.Value`` entry of a summary up to its float: ``value`` (field 1) holding
    ``tag`` (field 1) and the key of ``simple_value`` (field 2, 4 bytes follow)."""
    tag_bytes = name.encode()
    inner = b"\x0a" + _varint(len(tag_bytes)) + tag_bytes + b"\x15"
    return b"\x0a" + _varint(len(inner) + 4) + inner


def _events(names: list[str], steps: np.ndarray, values: np.ndarray, step_bytes: int, wall_time: float) -> np.ndarray:
    """Records of events at ``steps`` (whose varints all take ``step_bytes``), each holding
    its row of ``values`` (``[n, len(names)]``) under the tags ``names``."""
    summary = bytearray()
    offsets = []
    for name in names:
        summary += _value_prefix(name)
        offsets.append(len(summary))
        summary += bytes(4)
    head = b"\x09" + struct.pack("<d", wall_time) + b"\x10"  # wall_time, then the key of step
    body = len(head) + step_bytes + 1 + len(_varint(len(summary)))  # where the summary starts
    template = head + bytes(step_bytes) + b"\x2a" + _varint(len(summary)) + summary
    data = np.tile(np.frombuffer(template, np.uint8), (len(steps), 1))
    data[:, len(head) : len(head) + step_bytes] = _varints(steps, step_bytes)
    floats = np.ascontiguousarray(values, "<f4").view(np.uint8).reshape(len(steps), len(names), 4)
    for column, offset in enumerate(offsets):
        data[:, body + offset : body + offset + 4] = floats[:, column]
    return _framed(data)


def header_record(wall_time: float) -> bytes:
    """The record every event file starts with: an event holding the format version."""
    event = b"\x09" + struct.pack("<d", wall_time) + b"\x1a" + _varint(len(FILE_VERSION)) + FILE_VERSION
    return _framed(np.frombuffer(event, np.uint8)[None]).tobytes()


def encode(curves: Curves, wall_time: float) -> dict[int, bytes]:
    """A chunk's curves as the store records them (``metric -> (positions, steps, values)``)
    as event records per run: ``position -> records``, one event per step (ascending)
    holding every finite value at that step, tagged by :func:`tag`."""
    names = sorted(name for name in curves if len(curves[name][0]))
    if not names:
        return {}
    positions = np.concatenate([np.asarray(curves[name][0], np.int64) for name in names])
    steps = np.concatenate([np.asarray(curves[name][1], np.int64) for name in names])
    pair_positions, pair_steps, inverse = _pairs(positions, steps)
    values, present = _table(curves, names, inverse, len(pair_steps))
    records = _grouped_records([tag(name) for name in names], pair_steps, values, present, wall_time)
    runs, starts = np.unique(pair_positions, return_index=True)
    ends = [*starts[1:].tolist(), len(pair_steps)]
    return {
        int(run): b"".join(records[start:end])
        for run, start, end in zip(runs.tolist(), starts.tolist(), ends, strict=True)
    }


def _pairs(positions: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (position, step) pairs, sorted, and each input's pair index."""
    order = np.lexsort((steps, positions))
    ordered_positions, ordered_steps = positions[order], steps[order]
    new = np.ones(len(order), bool)
    new[1:] = (ordered_positions[1:] != ordered_positions[:-1]) | (ordered_steps[1:] != ordered_steps[:-1])
    inverse = np.empty(len(order), np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ordered_positions[new], ordered_steps[new], inverse


def _table(curves: Curves, names: list[str], inverse: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The curves as ``[pairs, metrics]`` float32 values and whether each is present (finite)."""
    values = np.zeros((rows, len(names)), np.float32)
    present = np.zeros((rows, len(names)), bool)
    offset = 0
    for column, name in enumerate(names):
        given = np.asarray(curves[name][2], np.float64)
        at = inverse[offset : offset + len(given)]
        offset += len(given)
        finite = np.isfinite(given)
        with np.errstate(over="ignore"):  # beyond float32's range: TensorBoard shows inf
            values[at, column] = np.where(finite, given, 0.0)
        present[at, column] = finite
    return values, present


def _grouped_records(
    tags: list[str], steps: np.ndarray, values: np.ndarray, present: np.ndarray, wall_time: float
) -> list[bytes]:
    """Each (run, step) pair's record (empty if it has no value): events that hold the same
    tags and whose steps' varints are equally long share one layout, encoded together."""
    records = [b""] * len(steps)
    step_bytes = _varint_lengths(steps)
    used = np.flatnonzero(present.any(axis=1))
    keys = np.concatenate([step_bytes[used, None].astype(np.uint8), np.packbits(present[used], axis=1)], axis=1)
    width = keys.shape[1]  # one fixed-width byte string per layout: sorted fast, unlike rows
    _, first, layout_of = np.unique(keys.view(f"S{width}")[:, 0], return_index=True, return_inverse=True)
    for index, row in enumerate(used[first].tolist()):
        rows = used[layout_of == index]
        columns = np.flatnonzero(present[row])
        chosen = [tags[column] for column in columns]
        encoded = _events(chosen, steps[rows], values[np.ix_(rows, columns)], int(step_bytes[row]), wall_time)
        for row, record in zip(rows.tolist(), encoded, strict=True):
            records[row] = record.tobytes()
    return records


class RunWriter:
    """One run's event file, created by this process: records are appended a chunk at a time."""

    def __init__(self, descriptor: int, path: Path) -> None:
        self.path = path
        self._file = os.fdopen(descriptor, "wb", buffering=0)
        self.write(header_record(time.time()))

    def write(self, records: bytes) -> None:
        """Append ``records`` (:func:`encode`) in one write; a failure names the file (a full
        disk is one line)."""
        view = memoryview(records)
        try:
            while view:
                view = view[self._file.write(view) :]
        except OSError as error:
            raise OSError(error.errno, error.strerror, str(self.path)) from None

    def close(self) -> None:
        """Close the file (every record is already written)."""
        self._file.close()


class Board:
    """The ``tensorboard`` folder of ``folder`` (a study's, or a training run's ``--out``):
    run folders and their writers, opened without following links. Nothing is made until a
    run is prepared or written. A context manager: leaving it closes every writer."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.root = folder / TENSORBOARD
        self._writers: dict[tuple[str, ...], RunWriter] = {}

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exception: object) -> None:
        self.close(quietly=exception[0] is not None)

    def prepare(self, parts: tuple[str, ...]) -> None:
        """Make (or check) a run's folders now: a link in the way is refused before training."""
        os.close(self._open(parts, create=True))

    def writer(self, parts: tuple[str, ...], fresh: bool = False) -> RunWriter:
        """The writer of the run folder ``parts`` (:func:`run_folder`): a new event file,
        after any earlier ones in name order, made on first use and kept until
        :meth:`close`. ``fresh``: the run starts afresh, so earlier event files go first."""
        if parts not in self._writers:
            if fresh:
                self.forget(parts)
            self._writers[parts] = self._new_writer(parts)
        return self._writers[parts]

    def forget(self, parts: tuple[str, ...]) -> None:
        """Remove the event files of ours in the run folder ``parts`` (a run that restarts
        from scratch), links planted under our names included (the links, not their
        targets); nothing else, and no folder is made."""
        descriptor = self._open(parts, create=False)
        if descriptor is None:
            return
        try:
            for name in os.listdir(descriptor):
                if EVENT_FILE.fullmatch(name):
                    os.unlink(name, dir_fd=descriptor)
        finally:
            os.close(descriptor)

    def close(self, parts: Iterable[tuple[str, ...]] | None = None, quietly: bool = False) -> None:
        """Close the writers of ``parts`` (default: all); every one is closed even if one
        fails, and the first failure is raised unless ``quietly``."""
        chosen = list(self._writers) if parts is None else [p for p in parts if p in self._writers]
        failure: OSError | None = None
        for key in chosen:
            try:
                self._writers.pop(key).close()
            except OSError as error:
                failure = failure or error
        if failure is not None and not quietly:
            raise failure

    def _new_writer(self, parts: tuple[str, ...]) -> RunWriter:
        """A writer on a new event file in the run folder ``parts`` (made if needed)."""
        descriptor = self._open(parts, create=True)
        try:
            name = _next_event_file(os.listdir(descriptor))
            path = self.root.joinpath(*parts, name)
            try:
                file = os.open(name, _CREATE, 0o666, dir_fd=descriptor)
            except FileExistsError:
                busy = f"{path} appeared while regspeed was writing it; is another process writing here?"
                raise ConfigError(FIELD, busy) from None
            except OSError as error:
                raise OSError(error.errno, error.strerror, str(path)) from None
        finally:
            os.close(descriptor)
        return RunWriter(file, path)

    def _open(self, parts: tuple[str, ...], create: bool) -> int | None:
        """A descriptor of ``tensorboard/<parts>``, each folder opened relative to its parent
        without following links (made if ``create``; None if one is missing otherwise)."""
        # the folder itself is the user's choice (it may be a link); below it, nothing is followed
        descriptor = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        path = self.folder
        for name in (TENSORBOARD, *parts):
            path = path / name
            try:
                child = _open_child(descriptor, name, path, create)
            finally:
                os.close(descriptor)
            if child is None:
                return None
            descriptor = child
        return descriptor


def _open_child(parent: int, name: str, path: Path, create: bool) -> int | None:
    """A descriptor of the folder ``name`` in ``parent`` (made first if ``create``), never
    through a link; None if it is missing and not ``create``. ``path`` is for messages."""
    if create:
        try:
            os.mkdir(name, 0o777, dir_fd=parent)
        except FileExistsError:
            pass  # ours from before, or something in the way: opening tells
        except OSError as error:
            raise OSError(error.errno, error.strerror, str(path)) from None
    try:
        return os.open(name, _FOLDER, dir_fd=parent)
    except FileNotFoundError:
        if create:
            raise
        return None
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise OSError(error.errno, error.strerror, str(path)) from None
    if stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
        raise ConfigError(FIELD, f"{path} is a symbolic link; {_NOT_THROUGH_LINKS}")
    raise ConfigError(FIELD, f"{path} is in the way: it is not a folder; {_IN_THE_WAY}")


def _next_event_file(names: Iterable[str]) -> str:
    """A name for a new event file that sorts after every event file of ours in ``names``."""
    found = [(int(m["seconds"]), int(m["sequence"])) for name in names if (m := EVENT_FILE.fullmatch(name))]
    seconds, sequence = max(found, default=(0, -1))
    return f"events.out.tfevents.{max(seconds, int(time.time())):010d}.{sequence + 1:06d}.regspeed"
