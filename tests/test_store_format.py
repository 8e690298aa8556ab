"""The store's curves as compact blocks (format 4 on: one row per chunk of a batch and metric).

Values read back bit for bit as written (float32 when they are, float64 otherwise; steps
however irregular; runs that stop mid-batch; chunks without values); every kind of damage
to a block is refused as "damaged"; stores of formats 2 and 3 read as before and are
rewritten as the current format, in one transaction, when a study resumes them; the CSV
export is byte for byte what Python's ``csv`` and ``format`` write. Cells (format 5):
tests/test_store_cells.py."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
import sqlite3
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regspeed.errors import ConfigError
from regspeed.study import results
from regspeed.study import store as store_module
from regspeed.study.store import Store

# A chunk as record_chunk takes it: metric -> (positions, steps, values).
Chunk = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]


def sql(folder: Path, *statements: str) -> None:
    with contextlib.closing(sqlite3.connect(folder / store_module.DATABASE)) as connection, connection:
        for statement in statements:
            connection.execute(statement)


def new_store(folder: Path, runs_per_batch: tuple[int, ...] = (2, 3), interleaved: bool = False) -> Store:
    """A store of one condition whose seeds fill batches of ``runs_per_batch`` runs (their run
    ids batch by batch, or ``interleaved``: the batches' runs taking turns)."""
    meta = {"spec_json": json.dumps({"name": "format"}), "speed_metrics": json.dumps(["score"])}
    planned, seed = [], 0
    for batch, size in enumerate(runs_per_batch):
        for position in range(size):
            planned.append(store_module.PlannedRun("none", seed, batch, position))
            seed += 1
    if interleaved:
        planned.sort(key=lambda run: (run.position, run.batch))
    batches = [(["none"], 100)] * len(runs_per_batch)
    return Store.create(folder, meta, [("none", "none", 0.0, "{}")], batches, planned)


def record(store: Store, batch: int, updates_done: int, chunk: Chunk, finished: bool = False) -> None:
    live = sorted({int(p) for positions, _, _ in chunk.values() for p in positions})
    name = f"batch-{batch:04d}-update-{updates_done:07d}.npz"
    store.record_chunk(batch, updates_done, chunk, live, {}, name, 1.0, finished)


def synthetic_store(folder: Path, interleaved: bool = False) -> Path:
    """Two batches, chunks of 4 updates: a regular metric, one with skipped steps (irregular),
    an evaluation at the chunk ends only, a run that fails in its batch's second chunk, and
    values that are not float32 (and a -0.0)."""
    with new_store(folder, interleaved=interleaved) as store:
        for batch, size in enumerate((2, 3)):
            for done in (4, 8, 12):
                updates = np.arange(done - 3, done + 1)
                alive = [p for p in range(size) if not (batch == 1 and p == 2 and done > 4)]
                positions = np.repeat(alive, 4)
                steps = np.tile(updates * 10, len(alive))
                score = (steps / 7 + positions + batch).astype(np.float32).astype(np.float64)
                loss = np.where(steps == 20, -0.0, 1 / steps + positions)  # float64 values
                keep = (steps + positions) % 3 != 0  # a metric that skips updates
                chunk = {
                    "score": (positions, steps, score),
                    "loss": (positions, steps, loss),
                    "sparse": (positions[keep], steps[keep], score[keep] * 2),
                    "eval": (np.asarray(alive), np.full(len(alive), done * 10), np.arange(len(alive)) + done / 4),
                }
                record(store, batch, done, chunk, finished=done == 12)
    return folder


def expected_curves(folder: Path) -> dict[str, dict[int, tuple[list[int], list[float]]]]:
    """What synthetic_store wrote, rebuilt by hand: metric -> run -> (steps, values)."""
    wanted: dict[str, dict[int, tuple[list[int], list[float]]]] = {}
    run_of = {}
    with Store.open(folder) as store:
        for run in store.runs():
            run_of[(run.batch, run.position)] = run.run_id
    for batch, size in enumerate((2, 3)):
        for done in (4, 8, 12):
            for update in range(done - 3, done + 1):
                for position in range(size):
                    if batch == 1 and position == 2 and done > 4:
                        continue
                    run, step = run_of[(batch, position)], update * 10
                    score = float(np.float32(step / 7 + position + batch))
                    pairs = [("score", score), ("loss", -0.0 if step == 20 else 1 / step + position)]
                    if (step + position) % 3:
                        pairs.append(("sparse", score * 2))
                    for name, value in pairs:
                        steps, values = wanted.setdefault(name, {}).setdefault(run, ([], []))
                        steps.append(step)
                        values.append(value)
            for position in range(size):
                if not (batch == 1 and position == 2 and done > 4):
                    steps, values = wanted.setdefault("eval", {}).setdefault(run_of[(batch, position)], ([], []))
                    steps.append(done * 10)
                    values.append(position + done / 4)
    return wanted


def bits(values: np.ndarray | list[float]) -> list[int]:
    return np.asarray(values, np.float64).view(np.uint64).tolist()


def block_rows(folder: Path) -> list[tuple]:
    """The key, size, encoding and checksum of every block (a chunk of a batch and a metric)."""
    with contextlib.closing(sqlite3.connect(folder / store_module.DATABASE)) as connection:
        return connection.execute(
            "SELECT metrics.name, batch_id, updates_done, count, encoding, sha256 FROM blocks "
            "JOIN metrics USING (metric_id) ORDER BY metrics.name, batch_id, updates_done"
        ).fetchall()


# ------------------------------------------------------------------------------ round trip


@pytest.mark.parametrize("interleaved", [False, True], ids=["runs-by-batch", "runs-interleaved"])
def test_curves_read_back_bit_for_bit(tmp_path: Path, interleaved: bool) -> None:
    folder = synthetic_store(tmp_path, interleaved)
    wanted = expected_curves(folder)
    with Store.open(folder) as store:
        assert store.meta()["format_version"] == str(store_module.FORMAT_VERSION) and store.checksummed
        assert store.metric_names() == sorted(wanted)
        for name, by_run in wanted.items():
            read = store.curve(name)
            assert list(read) == sorted(by_run)
            for run, (steps, values) in by_run.items():
                assert read[run][0].dtype == np.int64 and read[run][1].dtype == np.float64
                assert read[run][0].tolist() == steps and bits(read[run][1]) == bits(values), (name, run)
        arrays = store.curve_arrays("sparse")
        assert arrays.axis.tolist() == sorted({step for steps, _ in wanted["sparse"].values() for step in steps})
    encodings = {(name, batch, done): encoding for name, batch, done, _, encoding, _ in block_rows(folder)}
    assert encodings[("score", 0, 4)] == store_module.SHARED_STEPS  # float32, every run the same steps
    assert encodings[("loss", 0, 4)] == store_module.SHARED_STEPS | store_module.FLOAT64
    assert encodings[("sparse", 0, 4)] == 0  # runs with steps of their own
    assert len(encodings) == 4 * 2 * 3


@st.composite
def chunks(draw: st.DrawFn) -> list[tuple[int, int, Chunk]]:
    """Chunks of two batches (2 and 3 runs): any runs, any increasing steps, any values."""
    finite32 = st.floats(width=32, allow_nan=False, allow_infinity=False).map(float)
    anything = st.floats(allow_nan=False) | finite32 | st.sampled_from([0.0, -0.0, 5e-324, 1e308])
    out = []
    for batch, size in enumerate((2, 3)):
        step = 0
        for done in range(1, draw(st.integers(1, 4)) + 1):
            chunk: Chunk = {}
            for name in draw(st.lists(st.sampled_from(["a", "b", "c"]), unique=True, max_size=3)):
                positions, steps, values = [], [], []
                for position in draw(st.lists(st.integers(0, size - 1), unique=True, max_size=size)):
                    count = draw(st.integers(0, 4))
                    gaps = draw(st.lists(st.integers(1, 2**40), min_size=count, max_size=count))
                    positions += [position] * count
                    steps += (step + np.cumsum(gaps, dtype=np.int64)).tolist()
                    values += draw(
                        st.lists(finite32 if draw(st.booleans()) else anything, min_size=count, max_size=count)
                    )
                chunk[name] = (np.asarray(positions, np.int64), np.asarray(steps, np.int64), np.asarray(values))
            step += 2**45  # the next chunk's steps come after this one's
            out.append((batch, done, chunk))
    return out


@settings(max_examples=40)  # a store each
@given(chunks())
def test_any_values_at_any_steps_round_trip(tmp_path_factory: pytest.TempPathFactory, written: list) -> None:
    folder = tmp_path_factory.mktemp("round-trip")
    wanted: dict[str, dict[int, list[tuple[int, float]]]] = {}
    with new_store(folder) as store:
        run_of = {(run.batch, run.position): run.run_id for run in store.runs()}
        for batch, done, chunk in written:
            record(store, batch, done, chunk)
            for name, (positions, steps, values) in chunk.items():
                for position, step, value in zip(positions.tolist(), steps.tolist(), values.tolist(), strict=True):
                    wanted.setdefault(name, {}).setdefault(run_of[(batch, position)], []).append((step, value))
    with Store.open(folder) as store:
        for name in ("a", "b", "c"):
            read = store.curve(name)
            by_run = {run: sorted(pairs) for run, pairs in wanted.get(name, {}).items() if pairs}
            assert sorted(read) == sorted(by_run)
            for run, pairs in by_run.items():
                assert read[run][0].tolist() == [step for step, _ in pairs]
                assert bits(read[run][1]) == bits([value for _, value in pairs])


def test_a_store_without_values_reads_empty(tmp_path: Path) -> None:
    with new_store(tmp_path) as store:
        record(store, 0, 4, {"score": (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))})
        assert store.curve("score") == {} and store.curve("never") == {}
        assert results.curves(store, "score")[0].values.shape == (5, 0)
    assert block_rows(tmp_path) == []


def test_two_values_of_a_run_at_one_step_are_refused(tmp_path: Path) -> None:
    with new_store(tmp_path) as store, pytest.raises(ValueError, match="two values at one step"):
        record(store, 0, 4, {"score": (np.array([0, 0]), np.array([10, 10]), np.array([1.0, 2.0]))})
    assert block_rows(tmp_path) == []  # the chunk's transaction did not happen


def test_restarting_a_batch_removes_its_blocks_only(tmp_path: Path) -> None:
    folder = synthetic_store(tmp_path)
    before = block_rows(folder)
    with Store.open(folder, writable=True) as store:
        store.restart_batch(1)
        assert set(store.curve("score")) == {run.run_id for run in store.runs() if run.batch == 0}
    assert block_rows(folder) == [row for row in before if row[1] == 0]


# ---------------------------------------------------------------------------------- damage


def change_block(folder: Path, change: Callable[[dict], None], forge: bool = False) -> None:
    """Change the score block of batch 0 ending at update 8 (``change`` edits its columns in
    place); ``forge``: with a checksum made to match (damage only its structure can show)."""
    with contextlib.closing(sqlite3.connect(folder / store_module.DATABASE)) as connection, connection:
        connection.row_factory = sqlite3.Row
        where = "metric_id = (SELECT metric_id FROM metrics WHERE name = 'score') AND batch_id = 0 AND updates_done = 8"
        row = dict(connection.execute(f"SELECT * FROM blocks WHERE {where}").fetchone())
        change(row)
        if forge:
            block = store_module.Block(*(row[k] for k in ("count", "encoding", "runs", "counts", "steps", "vals")))
            row["sha256"] = store_module.block_digest("score", row["batch_id"], row["updates_done"], block)
        connection.execute(f"DELETE FROM blocks WHERE {where}")
        connection.execute(
            f"INSERT OR REPLACE INTO blocks ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
        )


def _flip(column: str, at: int) -> Callable[[dict], None]:
    def change(row: dict) -> None:
        data = bytearray(row[column])
        data[at] ^= 1
        row[column] = bytes(data)

    return change


def _set(**columns: object) -> Callable[[dict], None]:
    return lambda row: row.update(columns)


def _steps(steps: list[int]) -> bytes:
    return zlib.compress(np.diff(steps, prepend=0).astype("<i8").tobytes())


CHECKSUM_DAMAGE = {  # what the block's checksum finds
    "a-value": _flip("vals", 5),
    "a-value-removed": lambda row: row.update(vals=row["vals"][:-4], count=row["count"] - 1),
    "a-value-added": lambda row: row.update(vals=row["vals"] + row["vals"][:4], count=row["count"] + 1),
    "a-run": _flip("runs", 0),
    "a-count": _flip("counts", 0),
    "the-steps": _set(steps=_steps([50, 60, 70, 81])),
    "the-encoding": lambda row: row.update(encoding=row["encoding"] ^ store_module.FLOAT64),
    "moved-in-the-batch": _set(updates_done=16),
    "moved-to-a-batch": _set(batch_id=1),
    "moved-to-a-metric": lambda row: row.update(metric_id=row["metric_id"] + 1),
    "the-checksum": _set(sha256=bytes(32)),
    "the-checksum-cut": lambda row: row.update(sha256=row["sha256"][:16]),
    "text-for-a-blob": _set(vals="not a blob"),
    "a-number-for-a-blob": _set(steps=12),
}
STRUCTURE_DAMAGE = {  # with a checksum made to match: what reading the block finds
    "values-of-a-wrong-length": lambda row: row.update(vals=row["vals"][:-4]),
    "counts-that-do-not-add-up": lambda row: row.update(count=row["count"] + 1, vals=row["vals"] + bytes(4)),
    "runs-and-counts-apart": lambda row: row.update(counts=row["counts"] + row["counts"][:4]),
    "runs-out-of-order": lambda row: row.update(runs=row["runs"][8:] + row["runs"][:8]),
    "a-run-of-no-values": lambda row: row.update(counts=np.array([4, 0], "<i4").tobytes()),
    "steps-not-compressed": _set(steps=b"\x00\x01"),
    "steps-of-a-wrong-length": _set(steps=_steps([50, 60, 70])),
    "steps-of-an-odd-size": _set(steps=zlib.compress(b"\x01" * 7)),
    "an-unknown-encoding": lambda row: row.update(encoding=row["encoding"] | 8),
    "a-step-of-the-chunk-before": _set(steps=_steps([40, 60, 70, 80])),  # overlaps update 4's chunk
    "a-run-of-another-batch": _set(runs=np.array([1, 3], "<i8").tobytes()),
}


@pytest.mark.parametrize("how", [*CHECKSUM_DAMAGE, *STRUCTURE_DAMAGE])
def test_a_damaged_block_is_refused_as_damaged(tmp_path: Path, how: str) -> None:
    folder = synthetic_store(tmp_path / "study")
    change_block(folder, {**CHECKSUM_DAMAGE, **STRUCTURE_DAMAGE}[how], forge=how in STRUCTURE_DAMAGE)
    damaged = "loss" if how == "moved-to-a-metric" else "score"  # the metric that now holds the block
    message = rf"^study: .* is damaged: study.sqlite does not match its checksums: .*{damaged} values"
    with Store.open(folder) as store:
        with pytest.raises(ConfigError, match=message):
            store.curve(damaged)
        with pytest.raises(ConfigError, match=message):
            results.load(store, ("eval", damaged))
        target = tmp_path / "curves.csv"
        with pytest.raises(ConfigError, match=message):
            results.export(store, target, "csv")
        assert not target.exists() and not target.with_name("curves.csv.partial").exists()
        assert store.curve("eval")  # the other metrics read as before
        if how in CHECKSUM_DAMAGE:
            with pytest.raises(
                ConfigError, match=r"chunk of batch \d+ ending at update \d+ (differ from those written|cannot be read)"
            ):
                store.curve(damaged)


# ------------------------------------------------------------------------ formats 2, 3 and 4

FORMAT_4_TABLES = {  # as regspeed wrote them before cells (format 5)
    "conditions": """CREATE TABLE {table} (
    condition_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    strength REAL NOT NULL,
    regularizer TEXT NOT NULL
)""",
    "batches": """CREATE TABLE {table} (
    batch_id INTEGER PRIMARY KEY,
    condition_ids TEXT NOT NULL,
    total_updates INTEGER NOT NULL,
    updates_done INTEGER NOT NULL DEFAULT 0,
    checkpoint TEXT,
    wall_seconds REAL NOT NULL DEFAULT 0
)""",
}


def to_format_4(folder: Path) -> None:
    """Rewrite a store of one cell (format 5) as regspeed wrote format 4: no ``cells``, and
    ``conditions`` and ``batches`` without a ``cell`` (a condition's name unique)."""
    statements = ["DROP TABLE cells"]
    for table, create in FORMAT_4_TABLES.items():
        columns = ", ".join(name for name in re.findall(r"^    (\w+) ", create, re.MULTILINE))
        statements += [
            create.format(table=f"{table}_4"),
            f"INSERT INTO {table}_4 SELECT {columns} FROM {table}",
            f"DROP TABLE {table}",
            f"ALTER TABLE {table}_4 RENAME TO {table}",
        ]
    sql(folder, *statements, "UPDATE meta SET value = '4' WHERE key = 'format_version'")


def to_long_form(folder: Path, version: int) -> None:
    """Rewrite a store of one cell as an earlier regspeed wrote it: format 4's tables
    (:func:`to_format_4`), ``curves`` (SQLite stores -0.0 as 0) and, for format 3, a
    ``chunks`` row and checksum per block."""
    if "cells" in tables(folder):
        to_format_4(folder)
    rows, chunks = [], []
    with Store.open(folder) as store, store.connection:
        for name, metric_id in sorted(store._metric_ids.items()):
            for block in store.connection.execute(
                "SELECT batch_id, updates_done, count, encoding, sha256, runs, counts, steps, vals FROM blocks "
                "WHERE metric_id = ?",
                (metric_id,),
            ).fetchall():
                _, runs, counts, steps, values, shared = store_module._decode_block(name, block, {})
                steps = np.tile(steps, len(runs)) if shared else steps
                table = store_module.row_table(np.repeat(runs, counts), steps, values)
                rows += [(metric_id, *row) for row in table.tolist()]
                digest = store_module.chunk_digest(name, table)
                chunks.append((metric_id, *block[:2], int(steps.min()), int(steps.max()), len(table), digest))
    with contextlib.closing(sqlite3.connect(folder / store_module.DATABASE)) as connection, connection:
        connection.executescript(store_module.LONG_FORM)
        connection.executemany("INSERT INTO curves VALUES (?, ?, ?, ?)", rows)
        connection.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)", chunks)
        connection.execute("DROP TABLE blocks")
        if version == 2:
            connection.execute("DROP TABLE chunks")
        connection.execute(f"UPDATE meta SET value = '{version}' WHERE key = 'format_version'")


def curves_of(folder: Path, writable: bool = False) -> dict[str, dict[int, tuple[list[int], list[float]]]]:
    with Store.open(folder, writable=writable) as store:
        return {
            name: {run: (steps.tolist(), (values + 0.0).tolist()) for run, (steps, values) in store.curve(name).items()}
            for name in store.metric_names()
        }


def tables(folder: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(folder / store_module.DATABASE)) as connection:
        return {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


@pytest.mark.parametrize("version", [2, 3])
def test_an_earlier_format_reads_as_before_and_is_rewritten_when_resumed(tmp_path: Path, version: int) -> None:
    written = tmp_path / "written"
    synthetic_store(written)
    folder = tmp_path / "old"
    shutil.copytree(written, folder)
    to_long_form(folder, version)
    wanted = curves_of(written)  # -0.0 as 0.0, as the long form keeps it
    before = (folder / store_module.DATABASE).read_bytes()
    with Store.open(folder) as store:
        assert store.format_version == str(version) and store.checksummed == (version == 3)
    assert curves_of(folder) == wanted  # read as before, and not rewritten
    assert (folder / store_module.DATABASE).read_bytes() == before
    assert curves_of(folder, writable=True) == wanted  # rewritten, in one transaction
    assert {"curves", "chunks"} & tables(folder) == set() and "blocks" in tables(folder)
    with Store.open(folder) as store:
        assert store.meta()["format_version"] == str(store_module.FORMAT_VERSION) and store.checksummed
    keys = [row[:3] for row in block_rows(folder)]
    if version == 3:  # the chunks as written
        assert keys == [row[:3] for row in block_rows(written)]
    else:  # no chunks known: one block per batch, at its progress
        assert keys == [(name, batch, 12) for name in sorted(wanted) for batch in (0, 1)]
    with Store.open(folder, writable=True) as store:  # the study goes on
        record(store, 0, 16, {"score": (np.array([0, 1]), np.array([130, 130]), np.array([1.5, 2.5]))})
        store.restart_batch(1)
    read = curves_of(folder)
    assert read["score"][1] == (wanted["score"][1][0] + [130], wanted["score"][1][1] + [1.5])
    assert set(read["score"]) == {1, 2}


@pytest.mark.parametrize(
    ("version", "tampering", "found"),
    [
        (3, "UPDATE curves SET value = value + 1 WHERE run_id = 2 AND step = 30", "does not match its checksums"),
        (2, "INSERT INTO curves VALUES (1, 99, 10, 1.0)", "curves name a run it does not have"),
    ],
)
def test_a_damaged_earlier_store_is_refused_and_left_as_it_was(
    tmp_path: Path, version: int, tampering: str, found: str
) -> None:
    synthetic_store(tmp_path)
    to_long_form(tmp_path, version)
    sql(tmp_path, tampering)
    before = (tmp_path / store_module.DATABASE).read_bytes()
    with pytest.raises(ConfigError, match=rf"^study: .* is damaged: .*{found}"):
        Store.open(tmp_path, writable=True)
    assert (tmp_path / store_module.DATABASE).read_bytes() == before
    with Store.open(tmp_path) as store:
        assert store.format_version == str(version)


def test_a_store_of_format_4_without_its_blocks_is_refused(tmp_path: Path) -> None:
    synthetic_store(tmp_path)
    to_format_4(tmp_path)
    sql(tmp_path, "DROP TABLE blocks")
    with pytest.raises(ConfigError, match=r"not a regspeed study store \(it has no blocks table\)"):
        Store.open(tmp_path)


# ------------------------------------------------------------------------------ reading


def test_arrays_per_condition_and_frames_hold_every_value(tmp_path: Path) -> None:
    folder = synthetic_store(tmp_path / "synthetic")
    wanted = expected_curves(folder)
    complete = tmp_path / "complete"  # every run a value at every step
    with new_store(complete, (3,)) as store:
        for done in (4, 8):
            steps = np.arange(done - 3, done + 1) * 10
            record(store, 0, done, {"score": (np.repeat([0, 1, 2], 4), np.tile(steps, 3), np.arange(12.0) + done)})
    with Store.open(complete) as store:
        (score,) = results.curves(store, "score")
    np.testing.assert_array_equal(score.values, np.stack([np.r_[4:8, 8:12], np.r_[8:12, 12:16], np.r_[12:16, 16:20]]))
    with Store.open(folder) as store:
        runs = store.runs()
        per_metric = {name: results.curves(store, name)[0] for name in wanted}
        frame = results.to_pandas(store)
    for name, curves in per_metric.items():
        axis = sorted({step for steps, _ in wanted[name].values() for step in steps})
        assert curves.steps.tolist() == axis and curves.seeds == [run.seed for run in runs]
        for row, run in enumerate(runs):
            steps, values = wanted[name].get(run.run_id, ([], []))
            expected = np.full(len(axis), np.nan)
            expected[np.searchsorted(axis, steps)] = values
            np.testing.assert_array_equal(curves.values[row], expected)
    seed_of = {run.run_id: run.seed for run in runs}
    rows = sorted(
        (seed_of[run], name, step, value)
        for name, by_run in wanted.items()
        for run, (steps, values) in by_run.items()
        for step, value in zip(steps, values, strict=True)
    )
    assert list(zip(frame["seed"], frame["metric"], frame["step"], frame["value"], strict=True)) == rows
    assert bits(frame["value"].to_numpy()) == bits([row[3] for row in rows])


# --------------------------------------------------------------------------------- CSV


def reference_csv(store: Store) -> bytes:
    """The CSV export as regspeed wrote it before format 4: a line at a time."""
    names = {run.run_id: (run.condition, run.seed) for run in store.runs()}
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["condition", "seed", "metric", "step", "value"])
    for name in store.metric_names():
        for run_id, (steps, values) in store.curve(name).items():
            writer.writerows(
                (*names[run_id], name, step, f"{value:.9g}")
                for step, value in zip(steps.tolist(), values.tolist(), strict=True)
            )
    return text.getvalue().encode()


@pytest.mark.parametrize("condition", ["none", 'a "quoted", name', "ünïcode"])
def test_the_csv_export_is_what_csv_and_format_write(tmp_path: Path, condition: str) -> None:
    folder = synthetic_store(tmp_path / "study")
    sql(folder, f"UPDATE conditions SET name = '{condition.replace(chr(39), chr(39) * 2)}'")
    with Store.open(folder) as store:
        exported = results.export(store, tmp_path / "curves.csv", "csv").read_bytes()
        assert exported == reference_csv(store)
    assert len(exported.splitlines()) == 1 + sum(
        len(steps) for by_run in expected_curves(folder).values() for steps, _ in by_run.values()
    )


VALUES = (
    st.floats(width=32).map(float)
    | st.floats()
    | st.sampled_from([0.0, -0.0, 999999999.5, 9.9999999995e-5, 1e-5, 1e-4, 1e9, 1e99, 1e100, 1e-99, 1e-100, 5e-324])
    | st.integers(-(10**12), 10**12).map(float)
    | st.tuples(st.integers(-(10**9), 10**9), st.integers(0, 12)).map(lambda pair: pair[0] / 10 ** pair[1])
)
STEPS = st.integers(0, 10**8 - 1) | st.integers(-(2**63), 2**63 - 1) | st.integers(0, 20)


@given(
    st.lists(st.tuples(st.integers(0, 3), STEPS, VALUES), max_size=200),
    st.lists(st.text(max_size=8), min_size=4, max_size=4),
)
def test_csv_lines_are_what_python_writes_a_line_at_a_time(lines: list, names: list[str]) -> None:
    texts = [results._csv_row([name, 7, "a_metric", 0, 0])[:-5] for name in names]
    run_index = np.asarray([line[0] for line in lines], np.int64)
    steps = np.asarray([line[1] for line in lines], np.int64)
    values = np.asarray([line[2] for line in lines], np.float64)
    wanted = b"".join(
        texts[run] + f"{step},{value:.9g}\r\n".encode()
        for run, step, value in zip(run_index, steps.tolist(), values, strict=True)
    )
    assert results.CsvLines(texts)(run_index, steps, values) == wanted


def test_csv_lines_with_short_beginnings_are_written_a_line_at_a_time() -> None:
    texts = [b"a,1,m,", b"b,2,m,"]  # shorter than what a line may write beyond its end
    lines = results.CsvLines(texts)(np.array([0, 1, 0]), np.array([5, 6, 7]), np.array([0.5, -0.0, 1e-7]))
    assert lines == b"a,1,m,5,0.5\r\nb,2,m,6,-0\r\na,1,m,7,1e-07\r\n"


@pytest.mark.parametrize(
    "texts", [[b"c1,7,metric,", b"c2,8,metric,"], [b"c1,7,metric,", b"c1,10,metric,", b"c1,100,m,"]]
)
def test_csv_lines_of_beginnings_of_one_length_or_several(texts: list[bytes]) -> None:
    run_index = np.repeat(np.arange(len(texts)), 3)
    steps, values = np.tile([0, 9, 12345678], len(texts)), np.tile([0.25, -1e-30, 123456.5], len(texts))
    wanted = b"".join(
        texts[run] + f"{step},{value:.9g}\r\n".encode()
        for run, step, value in zip(run_index.tolist(), steps.tolist(), values.tolist(), strict=True)
    )
    assert results.CsvLines(texts)(run_index, steps, values) == wanted


def test_csv_lines_of_every_kind_of_value() -> None:
    rng = np.random.default_rng(0)
    with np.errstate(invalid="ignore"):  # signalling NaNs among the float32 bit patterns
        float32s = rng.integers(0, 2**32, 100_000, dtype=np.uint64).astype(np.uint32).view(np.float32).astype(float)
    values = np.concatenate(
        [
            float32s,
            rng.integers(0, 2**64, 100_000, dtype=np.uint64).view(np.float64),
            rng.random(100_000).astype(np.float32),
            np.round(rng.standard_normal(60_000) * 10.0 ** rng.integers(-12, 12, 60_000), 3),
            np.zeros(1000),
            -np.zeros(1000),
        ]
    )
    steps = rng.integers(0, 10**7, len(values))
    texts = [b"condition,0,metric,", b"c,12,m,", b"c0,1,metric_with_a_long_name,"]
    run_index = rng.integers(0, len(texts), len(values))
    wanted = b"".join(
        texts[run] + f"{step},{value:.9g}\r\n".encode()
        for run, step, value in zip(run_index.tolist(), steps.tolist(), values.tolist(), strict=True)
    )
    assert results.CsvLines(texts)(run_index, steps, values) == wanted
