"""The store's cells (format 5): a study as a grid of cells, each with its own conditions (the
same names in every cell), batches, runs and spec. A store of two cells round-trips; a
condition's name is unique within its cell only; a plan that mixes cells up is refused before
anything is written; a format-4 store reads as one cell, ``all``, and a study that resumes it
migrates it to format 5 in one transaction, its curves and checksums untouched, or not at all."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from test_store_format import block_rows, curves_of, record, synthetic_store, tables, to_format_4, to_long_form

from regspeed.errors import ConfigError
from regspeed.study import store as store_module
from regspeed.study.store import CellRow, PlannedRun, Store

SPEC = json.dumps({"name": "cells"})
CELLS = [("size=6", json.dumps({"name": "cells", "size": 6})), ("size=10", json.dumps({"name": "cells", "size": 10}))]
CONDITIONS = [
    ("none", "none", 0.0, '{"kind": "none"}', 0),
    ("l2@0.001", "l2", 0.001, '{"kind": "l2"}', 0),
    ("none", "none", 0.0, '{"kind": "none"}', 1),
    ("l2@0.001", "l2", 0.001, '{"kind": "l2"}', 1),
]
BATCHES = [(["none", "l2@0.001"], 12, 0), (["none"], 20, 1), (["l2@0.001"], 20, 1)]
RUNS = [  # two seeds of each condition; the batch of cell 0 holds both of its conditions
    PlannedRun("none", 0, 0, 0, 0),
    PlannedRun("none", 1, 0, 1, 0),
    PlannedRun("l2@0.001", 0, 0, 2, 0),
    PlannedRun("l2@0.001", 1, 0, 3, 0),
    PlannedRun("none", 0, 1, 0, 1),
    PlannedRun("none", 1, 1, 1, 1),
    PlannedRun("l2@0.001", 0, 2, 0, 1),
    PlannedRun("l2@0.001", 1, 2, 1, 1),
]
ADD_CONDITION = "INSERT INTO conditions (cell, name, kind, strength, regularizer) VALUES"


def two_cells(folder: Path) -> Store:
    """A store of two cells whose conditions have the same names."""
    return Store.create(folder, {"spec_json": SPEC}, CONDITIONS, BATCHES, RUNS, cells=CELLS)


def score(cell: int, batch: int, position: int, steps: np.ndarray) -> np.ndarray:
    """The values a run records: its cell, batch and position can be told from them."""
    return steps + 1000.0 * cell + 100.0 * batch + 10.0 * position


def write_curves(store: Store) -> None:
    """Two chunks of every batch: each run a score at every update."""
    for batch in store.batches():
        size = sum(1 for run in store.runs() if run.batch == batch.batch_id)
        store.start_batch(batch.batch_id)
        for done in (4, 8):
            positions, steps = np.repeat(np.arange(size), 4), np.tile(np.arange(done - 3, done + 1), size)
            values = score(batch.cell, batch.batch_id, positions, steps)
            record(store, batch.batch_id, done, {"score": (positions, steps, values)}, finished=done == 8)


def schema(folder: Path) -> dict[str, tuple[list[tuple], list[tuple]]]:
    """Every table's columns (name, type, not null, default, primary key) and unique indexes' columns."""
    with contextlib.closing(sqlite3.connect(folder / store_module.DATABASE)) as connection:
        found = {}
        for table in sorted(tables(folder)):
            columns = [tuple(row[1:]) for row in connection.execute(f"PRAGMA table_info({table})")]
            indexes = sorted(
                tuple(column for _, _, column in connection.execute(f"PRAGMA index_info('{name}')"))
                for _, name, unique, *_ in connection.execute(f"PRAGMA index_list({table})")
                if unique
            )
            found[table] = (columns, indexes)
        return found


def raw(folder: Path, statement: str) -> list[tuple]:
    """One SQL statement on a store, committed; its rows."""
    with contextlib.closing(sqlite3.connect(folder / store_module.DATABASE)) as connection, connection:
        return connection.execute(statement).fetchall()


# ------------------------------------------------------------------------------ two cells


def test_two_cells_with_the_same_condition_names_round_trip(tmp_path: Path) -> None:
    with two_cells(tmp_path) as store:
        write_curves(store)
    with Store.open(tmp_path) as store:
        assert store.format_version == "5"
        assert store.cells() == [CellRow(0, *CELLS[0]), CellRow(1, *CELLS[1])]
        assert [(c["cell"], c["name"], c["kind"], c["strength"]) for c in store.conditions()] == [
            (cell, name, kind, strength) for name, kind, strength, _, cell in CONDITIONS
        ]
        assert store.conditions()[3]["regularizer"] == {"kind": "l2"}
        runs = store.runs()
        assert [(r.cell, r.condition, r.seed, r.batch, r.position) for r in runs] == [
            (r.cell, r.condition, r.seed, r.batch, r.position) for r in RUNS
        ]
        assert all(run.status == "finished" and run.updates_done == 8 for run in runs)
        assert [(b.batch_id, b.conditions, b.total_updates, b.cell, b.updates_done) for b in store.batches()] == [
            (index, names, total, cell, 8) for index, (names, total, cell) in enumerate(BATCHES)
        ]
        curve = store.curve("score")
    assert sorted(curve) == sorted(run.run_id for run in runs)
    for run in runs:  # each run's values are those its cell's batch recorded at its position
        steps, values = curve[run.run_id]
        assert steps.tolist() == list(range(1, 9))
        assert values.tolist() == score(run.cell, run.batch, run.position, steps).tolist()


def test_a_sequential_wave_adds_batches_of_a_cell(tmp_path: Path) -> None:
    with two_cells(tmp_path) as store:
        store.add_wave([(["none"], 20, 1)], [PlannedRun("none", 2, 3, 0, 1)], {"plan": "{}"})
        with pytest.raises(ValueError, match="is the first of batch 4 but not of its cell 1"):  # cell 0's none first
            store.add_wave([(["none"], 20, 1)], [PlannedRun("none", 3, 4, 0, 0)], {})
    with Store.open(tmp_path) as store:
        assert store.batches()[-1].cell == 1 and len(store.batches()) == 4
        added = [run for run in store.runs() if run.batch == 3]
        assert [(run.cell, run.condition, run.seed) for run in added] == [(1, "none", 2)]
        in_order = [(r.cell, r.condition, r.seed) for r in store.runs()]
        assert in_order[4:7] == [(1, "none", seed) for seed in (0, 1, 2)]  # cell 1's none, after all of cell 0


def test_a_batch_may_hold_runs_of_several_cells_each_read_as_its_cells(tmp_path: Path) -> None:
    shared = [(["none", "l2@0.001"], 12, 0), (["l2@0.001"], 12, 1)]  # cells differing only in a traced rate
    runs = [*RUNS[:4], PlannedRun("none", 0, 0, 4, 1), PlannedRun("none", 1, 0, 5, 1)]
    runs += [PlannedRun("l2@0.001", 0, 1, 0, 1), PlannedRun("l2@0.001", 1, 1, 1, 1)]
    with Store.create(tmp_path, {"spec_json": SPEC}, CONDITIONS, shared, runs, cells=CELLS) as store:
        write_curves(store)
    with Store.open(tmp_path) as store:
        mixed = [run for run in store.runs() if run.batch == 0]
        assert [(run.cell, run.condition) for run in mixed][-2:] == [(1, "none"), (1, "none")]
        assert [batch.cell for batch in store.batches()] == [0, 1]
        curve, home = store.curve("score"), {batch.batch_id: batch.cell for batch in store.batches()}
        for run in store.runs():  # each run reads the values recorded at its own batch and position
            expected = score(home[run.batch], run.batch, run.position, np.arange(1, 9.0))
            assert curve[run.run_id][1].tolist() == expected.tolist()


def test_a_condition_name_is_unique_within_its_cell_only(tmp_path: Path) -> None:
    twice = [*CONDITIONS, ("none", "l1", 0.01, "{}", 1)]
    with pytest.raises(sqlite3.IntegrityError, match=r"UNIQUE constraint failed: conditions\.cell, conditions\.name"):
        Store.create(tmp_path, {"spec_json": SPEC}, twice, BATCHES, RUNS, cells=CELLS)
    assert list(tmp_path.iterdir()) == []  # no store, nor a partial one
    with two_cells(tmp_path):
        pass
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"):
        raw(tmp_path, f"{ADD_CONDITION} (0, 'none', 'l1', 0, '{{}}')")
    raw(tmp_path, "INSERT INTO cells VALUES (2, 'size=14', '{}')")
    raw(tmp_path, f"{ADD_CONDITION} (2, 'none', 'none', 0, '{{}}')")
    with Store.open(tmp_path) as store:
        assert [(c["cell"], c["name"]) for c in store.conditions()][-1] == (2, "none")


def test_a_study_without_factors_is_one_cell_named_all(tmp_path: Path) -> None:
    runs = [PlannedRun("none", seed, 0, seed) for seed in (0, 1)]
    with Store.create(tmp_path, {"spec_json": SPEC}, [("none", "none", 0.0, "{}")], [(["none"], 8)], runs) as store:
        assert store.cells() == [CellRow(0, "all", SPEC)]
        assert [c["cell"] for c in store.conditions()] == [0]
        assert [b.cell for b in store.batches()] == [0] and [r.cell for r in store.runs()] == [0, 0]


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        ({"conditions": [CONDITIONS[2], CONDITIONS[0], CONDITIONS[1], CONDITIONS[3]]}, "cell by cell"),
        ({"conditions": [*CONDITIONS, ("none", "none", 0.0, "{}", 2)]}, r"conditions of cells \[2\]"),
        ({"cells": [CELLS[0], ("size=10", "[10]")]}, "spec of cell 'size=10' is not a JSON object"),
        ({"batches": [*BATCHES, (["none"], 20, 2)]}, "batch 3 is of cell 2"),
        ({"batches": [(["none", "l1"], 12, 0), *BATCHES[1:]]}, r"batch 0 names conditions \['l1'\]"),
        ({"batches": [(["none", "l2@0.001"], 12, 0, 1), *BATCHES[1:]]}, "has 4 fields"),
        ({"runs": [*RUNS[:6], PlannedRun("l2@0.001", 2, 2, 0, 0), *RUNS[6:]]}, "is the first of batch 2 but not of"),
        ({"runs": [*RUNS[:7], PlannedRun("none", 2, 2, 1, 1)]}, "not of a condition of its cell in a new batch naming"),
        ({"runs": [*RUNS, PlannedRun("none", 2, 3, 0, 1)]}, "not of a condition of its cell in a new batch"),
        ({"runs": [*RUNS, PlannedRun("l1", 2, 2, 2, 1)]}, "not of a condition of its cell"),
        ({"runs": RUNS[:6]}, r"batch 2 names conditions \['l2@0.001'\] but its runs are of \[\]"),
        ({"batches": [(["none", "l2@0.001"], 12, 0), (["none", "l2@0.001"], 20, 1), BATCHES[2]]},
         r"batch 1 names conditions \['l2@0.001', 'none'\] but its runs are of \['none'\]"),
    ],
    ids=[
        "conditions-not-cell-by-cell",
        "a-condition-of-no-cell",
        "a-cell-spec-not-an-object",
        "a-batch-of-no-cell",
        "a-batch-of-another-cells-condition",
        "a-batch-of-five-fields",
        "a-batch-led-by-a-run-of-another-cell",
        "a-run-in-a-batch-without-its-condition",
        "a-run-of-no-batch",
        "a-run-of-a-condition-its-cell-lacks",
        "a-batch-without-runs",
        "a-batch-naming-a-condition-none-of-its-runs-has",
    ],
)
def test_a_plan_that_mixes_cells_up_is_refused_before_anything_is_written(
    tmp_path: Path, change: dict, refused: str
) -> None:
    plan = {"conditions": CONDITIONS, "batches": BATCHES, "runs": RUNS, "cells": CELLS} | change
    with pytest.raises(ValueError, match=refused):
        Store.create(tmp_path, {"spec_json": SPEC}, plan["conditions"], plan["batches"], plan["runs"], plan["cells"])
    assert not (tmp_path / store_module.DATABASE).exists()
    assert not (tmp_path / (store_module.DATABASE + ".partial")).exists()


# ------------------------------------------------------------------------------ format 4


def format_4_store(tmp_path: Path) -> Path:
    """The synthetic store of tests/test_store_format.py, as format 4 wrote it."""
    folder = synthetic_store(tmp_path / "study")
    to_format_4(folder)
    return folder


def test_a_format_4_store_reads_as_one_cell_named_all(tmp_path: Path) -> None:
    folder = format_4_store(tmp_path)
    before = (folder / store_module.DATABASE).read_bytes()
    assert "cells" not in tables(folder)
    with Store.open(folder) as store:
        assert store.format_version == "4"
        assert store.cells() == [CellRow(0, "all", store.meta()["spec_json"])]
        assert [(c["cell"], c["name"]) for c in store.conditions()] == [(0, "none")]
        assert {run.cell for run in store.runs()} == {0} and len(store.runs()) == 5
        assert [(b.batch_id, b.cell, b.conditions) for b in store.batches()] == [(0, 0, ["none"]), (1, 0, ["none"])]
    assert (folder / store_module.DATABASE).read_bytes() == before  # read, not migrated


def test_a_format_4_store_is_migrated_when_a_study_resumes_it(tmp_path: Path) -> None:
    folder = format_4_store(tmp_path)
    with Store.open(folder) as store:
        read_as_4 = (store.conditions(), store.runs(), store.batches(), store.cells())
    rows = {table: raw(folder, f"SELECT * FROM {table}") for table in ("conditions", "runs", "batches", "meta")}
    blocks, curves = block_rows(folder), curves_of(folder)
    with Store.open(folder, writable=True) as store:
        assert store.format_version == "5"
        assert (store.conditions(), store.runs(), store.batches(), store.cells()) == read_as_4
    assert block_rows(folder) == blocks and curves_of(folder) == curves  # checksums and values as they were
    assert raw(folder, "SELECT * FROM conditions") == [(*row[:1], 0, *row[1:]) for row in rows["conditions"]]
    assert raw(folder, "SELECT * FROM batches") == [(*row, 0) for row in rows["batches"]]
    assert raw(folder, "SELECT * FROM runs") == rows["runs"]
    assert raw(folder, "SELECT * FROM meta") == [
        (key, "5" if key == "format_version" else value) for key, value in rows["meta"]
    ]
    fresh = tmp_path / "fresh"
    with two_cells(fresh):
        pass
    assert schema(folder) == schema(fresh)  # the columns and constraints of a store created as format 5
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"):
        raw(folder, f"{ADD_CONDITION} (0, 'none', 'l1', 0, '{{}}')")
    with Store.open(folder, writable=True) as store:  # the study goes on
        record(store, 0, 16, {"score": (np.array([0, 1]), np.array([130, 130]), np.array([1.5, 2.5]))})
        store.add_wave([(["none"], 100)], [PlannedRun("none", 5, 2, 0)], {})
    with Store.open(folder) as store:
        assert store.curve("score")[1][1][-1] == 1.5 and store.batches()[-1].cell == 0


@pytest.mark.parametrize("version", [2, 3])
def test_the_long_form_formats_are_migrated_to_format_5_in_one_go(tmp_path: Path, version: int) -> None:
    folder = synthetic_store(tmp_path / "study")
    to_long_form(folder, version)
    wanted = curves_of(folder)
    with Store.open(folder, writable=True) as store:
        assert store.format_version == "5" and store.cells() == [CellRow(0, "all", store.meta()["spec_json"])]
    with two_cells(tmp_path / "fresh"):
        pass
    assert schema(folder) == schema(tmp_path / "fresh")  # no curves, no chunks: blocks and cells
    assert curves_of(folder) == wanted


@pytest.mark.parametrize("version", [4, 3, 2])
def test_a_migration_stopped_midway_leaves_the_earlier_format_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    folder = synthetic_store(tmp_path / "study")
    if version < 4:
        to_long_form(folder, version)
    else:
        to_format_4(folder)
    wanted = curves_of(folder)
    before = (folder / store_module.DATABASE).read_bytes()
    add_cells = Store._add_cells

    def power_cut(store: Store) -> None:  # the last step of the migration done, then a crash
        add_cells(store)
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "_add_cells", power_cut)
    with pytest.raises(KeyboardInterrupt):
        Store.open(folder, writable=True)
    assert (folder / store_module.DATABASE).read_bytes() == before
    assert "cells" not in tables(folder)
    with Store.open(folder) as store:
        assert store.format_version == str(version) and store.cells()[0].label == "all"
    assert curves_of(folder) == wanted
    monkeypatch.undo()
    with Store.open(folder, writable=True) as store:  # and the next resume migrates it
        assert store.format_version == "5"
    assert curves_of(folder) == wanted


def test_a_damaged_format_4_store_is_refused_unchanged(tmp_path: Path) -> None:
    folder = format_4_store(tmp_path)
    ((page,),) = raw(folder, "SELECT rootpage FROM sqlite_master WHERE name = 'conditions'")
    ((page_size,),) = raw(folder, "PRAGMA page_size")
    with open(folder / store_module.DATABASE, "r+b") as file:  # the conditions' page: not a b-tree page any more
        file.seek((page - 1) * page_size)
        file.write(b"\xff" * 16)
    before = (folder / store_module.DATABASE).read_bytes()
    with pytest.raises(ConfigError, match=r"^study: .* damaged"):
        Store.open(folder, writable=True)
    assert (folder / store_module.DATABASE).read_bytes() == before


def test_a_store_of_format_5_without_its_cells_is_refused(tmp_path: Path) -> None:
    folder = synthetic_store(tmp_path)
    raw(folder, "DROP TABLE cells")
    with pytest.raises(ConfigError, match=r"not a regspeed study store \(it has no cells table\)"):
        Store.open(folder)
