"""Damaged studies: a missing or unreadable checkpoint costs only what needs it (a GIF, or the
progress of an unfinished batch, which restarts from scratch), never the curves; a damaged
``study.sqlite`` is refused as damaged (SQLite's quick_check, and a SHA-256 per stored block
of curves) instead of being computed from; stores of formats 2 (no checksums) and 3 (long
form) still read, and are rewritten as the current format when they resume (tests/test_store_format.py
has every kind of damage to a block, and the formats in detail)."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result
from conftest import batch_zero_updates, kill_mid_batch
from test_store_format import CHECKSUM_DAMAGE, block_rows, change_block, to_long_form
from test_study import TINY_SPEC, checkpoints, store_contents, tiny_spec
from typer.testing import CliRunner

from regspeed.cli import app
from regspeed.errors import ConfigError
from regspeed.study import results, runner
from regspeed.study import store as store_module

OUTPUTS = ("report.html", "summary.md", "curves.csv", "score.npz")  # what commands write into a study folder


def invoke(*arguments: str | Path) -> Result:
    return CliRunner().invoke(app, [str(argument) for argument in arguments])


def refused_as_damaged(result: Result) -> str:
    """Assert a command ended with one line ``error: study: ... damaged ...`` and exit code 2."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: study: "), result.output
    assert "damaged" in lines[0], lines[0]
    return lines[0]


def status_refused_as_damaged(result: Result) -> str:
    """Assert ``regspeed status`` ended with the one-line "damaged" error and showed no numbers.
    It prints the study's creation date first: damage found in the curves comes after it."""
    assert result.exit_code == 2 and not status_rows(result.output), result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("error: study: ") and "damaged" in lines[-1], result.output
    return lines[-1]


def sql(folder: Path, *statements: str) -> None:
    """Change a study's store with SQL (the connection is closed, so the file is whole afterwards)."""
    with contextlib.closing(sqlite3.connect(folder / store_module.DATABASE)) as connection, connection:
        for statement in statements:
            connection.execute(statement)


def copy_study(source: Path, folder: Path) -> Path:
    """A copy of a study to tamper with, without the outputs earlier tests may have written into it."""
    shutil.copytree(source, folder, symlinks=True)
    for name in OUTPUTS:
        (folder / name).unlink(missing_ok=True)
    return folder


def status_rows(output: str) -> list[str]:
    """The numbers of ``regspeed status``: its table's rows (the title holds the folder's path)."""
    return [line for line in output.splitlines() if line.startswith("│")]


def damage(path: Path, offset: int, size: int = 512, seed: int = 0) -> None:
    """Write ``size`` random bytes into ``path`` at ``offset`` (in place, as a disk or a person might)."""
    noise = np.random.default_rng(seed).bytes(size)
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(noise)


@pytest.fixture
def study(tiny_study: Path, tmp_path: Path) -> Path:
    """A copy of the finished tiny study, to tamper with."""
    return copy_study(tiny_study, tmp_path / "study")


@pytest.fixture(scope="module")
def intact(tiny_study: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """What status, report and export say about the intact tiny study (run once per module)."""
    folder = copy_study(tiny_study, tmp_path_factory.mktemp("intact") / "study")
    status = invoke("status", folder)
    assert status.exit_code == 0, status.output
    report = invoke("report", folder)
    assert report.exit_code == 0, report.output
    export = invoke("export", folder)
    assert export.exit_code == 0, export.output
    return {
        "status": status_rows(status.output),
        "summary": (folder / "summary.md").read_text(),
        "gifs": (folder / "report.html").read_text().count("data:image/gif"),
        "csv": (folder / "curves.csv").read_bytes(),
    }


# ----------------------------------------------------------- checksums (no training: quick)


def synthetic_store(folder: Path) -> Path:
    """A store of two runs in one batch, written through the runner's path (two chunks, step 0
    evaluated in the first, and a -0.0, which reads back as -0.0)."""
    meta = {"spec_json": json.dumps({"name": "synthetic"}), "speed_metrics": json.dumps(["score"])}
    runs = [store_module.PlannedRun("none", seed, 0, seed) for seed in (0, 1)]
    with store_module.Store.create(folder, meta, [("none", "none", 0.0, "{}")], [(["none"], 8)], runs) as store:
        for done in (4, 8):
            updates = np.arange(done - 3, done + 1)
            positions, steps = np.repeat([0, 1], 4), np.tile(updates * 10, 2)
            score = np.where(steps == 20, -0.0, steps / 7 + positions)
            curves = {"score": (positions, steps, score), "loss": (positions, steps, 1 / steps)}
            if done == 4:
                curves["eval"] = (np.array([0, 1, 0, 1]), np.array([0, 0, 40, 40]), np.array([0.5, 1.5, 2.5, 3.5]))
            name = f"batch-0000-update-{done:07d}.npz"
            store.record_chunk(0, done, curves, [0, 1], {}, name, 1.0, finished=done == 8)
    return folder


def test_checksums_accept_what_was_written(tmp_path: Path) -> None:
    folder = synthetic_store(tmp_path)
    with store_module.Store.open(folder) as store:
        assert store.checksummed
        data = results.load(store, ("score", "loss", "eval"))
        exported = results.export(store, tmp_path / "curves.csv", "csv")
    score = data.curves_of("score")["none"]
    np.testing.assert_array_equal(score.steps, np.arange(1, 9) * 10)
    assert score.values[0, 1] == 0.0 and np.signbit(score.values[0, 1]) and np.isfinite(score.values).all()
    assert len(exported.read_text().splitlines()) == 1 + 2 * 8 * 2 + 4
    assert len(block_rows(folder)) == 5  # per chunk, one per metric it recorded


@pytest.mark.parametrize(
    "tampering", ["a-value", "a-value-removed", "a-value-added", "a-run", "moved-in-the-batch", "the-checksum"]
)
def test_curve_rows_that_do_not_match_their_chunk_are_damaged(tmp_path: Path, tampering: str) -> None:
    folder = synthetic_store(tmp_path / "study")
    change_block(folder, CHECKSUM_DAMAGE[tampering])  # the score block of update 8
    with store_module.Store.open(folder) as store:
        with pytest.raises(ConfigError, match=r"^study: .* is damaged: .*chunk"):
            results.load(store, ("score", "loss", "eval"))
        target = tmp_path / "curves.csv"
        with pytest.raises(ConfigError, match=r"^study: .* is damaged"):
            results.export(store, target, "csv")
    assert not target.exists() and not target.with_name("curves.csv.partial").exists()


def test_a_format_2_store_reads_and_is_rewritten_with_checksums_when_it_resumes(tmp_path: Path) -> None:
    folder = synthetic_store(tmp_path)
    with store_module.Store.open(folder) as store:
        written = results.load(store, ("score",)).curves_of("score")["none"]
    to_long_form(folder, 2)
    with store_module.Store.open(folder) as store:
        assert not store.checksummed
        read = results.load(store, ("score",)).curves_of("score")["none"]
    np.testing.assert_array_equal(read.values, written.values)
    with store_module.Store.open(folder, writable=True) as store:  # a resumed format-2 study: the current format
        store.restart_batch(0)
        curves = {"score": (np.array([0, 1]), np.array([10, 10]), np.array([1.0, 2.0]))}
        store.record_chunk(0, 1, curves, [0, 1], {}, "batch-0000-update-0000001.npz", 1.0, finished=False)
    with store_module.Store.open(folder) as store:
        assert store.meta()["format_version"] == str(store_module.FORMAT_VERSION) and store.checksummed
        assert store.curve("score")[1][1].tolist() == [1.0]


def test_a_format_3_store_without_its_checksums_is_refused(tmp_path: Path) -> None:
    folder = synthetic_store(tmp_path)
    to_long_form(folder, 3)
    sql(folder, "DROP TABLE chunks")
    with pytest.raises(ConfigError, match=r"not a regspeed study store \(it has no chunks table\)"):
        store_module.Store.open(folder)


def test_restarting_a_batch_removes_its_curves_in_one_transaction(tmp_path: Path) -> None:
    folder = synthetic_store(tmp_path)
    with store_module.Store.open(folder, writable=True) as store:
        store.restart_batch(0)
        assert store.curve("score") == {} and store.curve("eval") == {}
        assert [(run.status, run.updates_done, run.error) for run in store.runs()] == [("pending", 0, None)] * 2
        assert [(batch.updates_done, batch.checkpoint, batch.wall_seconds) for batch in store.batches()] == [
            (0, None, 0.0)
        ]
    assert block_rows(folder) == []


# -------------------------------------------------- a finished study loses a checkpoint


def _delete(path: Path) -> None:
    path.unlink()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _random_bytes(path: Path) -> None:
    damage(path, path.stat().st_size // 2)


CHECKPOINT_DAMAGE = {"deleted": _delete, "truncated": _truncate, "random-bytes": _random_bytes}


@pytest.mark.slow  # the tiny study fixture, and a report
@pytest.mark.parametrize("how", CHECKPOINT_DAMAGE)
def test_a_finished_study_without_a_readable_checkpoint_still_reports(
    study: Path, intact: dict[str, object], how: str
) -> None:
    CHECKPOINT_DAMAGE[how](study / "checkpoints" / "batch-0000-update-0000120.npz")  # batch 0: the baseline
    status = invoke("status", study)
    assert status.exit_code == 0, status.output
    assert status_rows(status.output) == intact["status"]
    exported = invoke("export", study)
    assert exported.exit_code == 0, exported.output
    assert (study / "curves.csv").read_bytes() == intact["csv"]
    report = invoke("report", study)
    assert report.exit_code == 0, report.output
    summary = (study / "summary.md").read_text()
    left_out = [line for line in summary.splitlines() if "GIF" in line and "none (seed" in line]
    assert len(left_out) == 1 and ("missing" in left_out[0] or "cannot be read" in left_out[0]), summary
    assert summary.replace(left_out[0] + "\n", "") == intact["summary"]  # every number as before
    html = (study / "report.html").read_text()
    assert html.count("data:image/gif") == intact["gifs"] - 1 and "<figcaption>l2@" in html
    watch = invoke("watch", study, "--condition", "none", "--gif", study / "run.gif")
    assert watch.exit_code == 2 and len(watch.output.strip().splitlines()) == 1, watch.output
    assert "batch-0000-update-0000120.npz" in watch.output and not (study / "run.gif").exists()


# ------------------------------------------- an unfinished study loses its batch's checkpoint


@pytest.mark.slow  # a study killed mid-batch, resumed: about a minute
def test_a_killed_study_whose_checkpoint_was_deleted_restarts_that_batch(
    tiny_study: Path, intact: dict[str, object], tmp_path: Path
) -> None:
    spec_path = tmp_path / "tiny.toml"
    spec_path.write_text(TINY_SPEC)
    folder = tmp_path / "killed"
    kill_mid_batch(spec_path, folder)
    with contextlib.closing(sqlite3.connect(folder / store_module.DATABASE)) as connection:
        (name,) = connection.execute("SELECT checkpoint FROM batches WHERE batch_id = 0").fetchone()
    assert name is not None and batch_zero_updates(folder) < 120, "the kill should land inside the first batch"
    (folder / "checkpoints" / name).unlink()
    resumed = invoke("study", spec_path, "--out", folder)
    assert resumed.exit_code == 0, resumed.output
    warnings = [line for line in resumed.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "batch 1/2 (none)" in warnings[0] and name in warnings[0], resumed.output
    assert "restarts from scratch" in warnings[0] and "is missing" in warnings[0]
    assert store_contents(folder) == store_contents(tiny_study)
    assert block_rows(folder) == block_rows(tiny_study)
    assert invoke("export", folder).exit_code == 0
    assert (folder / "curves.csv").read_bytes() == intact["csv"]
    assert checkpoints(folder).keys() == checkpoints(tiny_study).keys()


def _unfinish_batch_zero(study: Path, format_version: int) -> str:
    """Batch 0 stopped at update 116 of 120 (as a crash would leave it); returns its checkpoint's name."""
    name = "batch-0000-update-0000116.npz"
    in_batch = "run_id IN (SELECT run_id FROM runs WHERE batch_id = 0)"
    sql(
        study,
        *(["DELETE FROM blocks WHERE batch_id = 0 AND updates_done > 116"] if format_version == 4 else []),
        *([f"DELETE FROM curves WHERE {in_batch} AND step > 116 * 128"] if format_version < 4 else []),
        *(["DELETE FROM chunks WHERE batch_id = 0 AND updates_done > 116"] if format_version == 3 else []),
        "UPDATE runs SET status = 'running', updates_done = 116, finished = NULL WHERE batch_id = 0",
        f"UPDATE batches SET updates_done = 116, checkpoint = '{name}' WHERE batch_id = 0",
    )
    checkpoints = study / "checkpoints"
    (checkpoints / "batch-0000-update-0000120.npz").rename(checkpoints / name)
    return name


@pytest.mark.slow  # trains one batch of the tiny study
@pytest.mark.parametrize(("how", "format_version"), [("random-bytes", 4), ("random-bytes", 3), ("truncated", 2)])
def test_an_unfinished_batch_with_an_unreadable_checkpoint_restarts_from_scratch(
    study: Path, tiny_study: Path, intact: dict[str, object], how: str, format_version: int
) -> None:
    if format_version < 4:  # as an earlier regspeed left it: it resumes as the current format
        to_long_form(study, format_version)
    name = _unfinish_batch_zero(study, format_version)
    CHECKPOINT_DAMAGE[how](study / "checkpoints" / name)
    warned: list[str] = []
    outcome = runner.run(tiny_spec(), study, TINY_SPEC, warn=warned.append)
    assert not outcome.already_finished and outcome.runs_failed == 0
    assert len(warned) == 1 and "batch 1/2 (none) restarts from scratch" in warned[0] and name in warned[0]
    assert "cannot be read" in warned[0] and "\n" not in warned[0]
    assert store_contents(study) == store_contents(tiny_study)
    assert sorted(checkpoints(study)) == sorted(checkpoints(tiny_study))  # the unreadable one is gone
    assert invoke("export", study).exit_code == 0
    assert (study / "curves.csv").read_bytes() == intact["csv"]
    with store_module.Store.open(study) as store:
        assert store.meta()["format_version"] == str(store_module.FORMAT_VERSION) and store.checksummed
    if format_version > 2:  # format 2 did not know its chunks: each batch's curves were one block per metric
        assert block_rows(study) == block_rows(tiny_study)


# ---------------------------------------------------- random bytes or a flipped bit in study.sqlite


def _a_stored_score(database: Path) -> int:
    """The offset in the file of the first value of a ``score`` block whose values occur once
    in the file (as stored: float32, little-endian)."""
    content = database.read_bytes()
    with contextlib.closing(sqlite3.connect(database)) as connection:
        blobs = connection.execute(
            "SELECT vals FROM blocks JOIN metrics USING (metric_id) WHERE name = 'score' "
            "ORDER BY batch_id, updates_done"
        ).fetchall()
    for (values,) in blobs:
        if content.count(values) == 1:
            return content.index(values)
    raise AssertionError("no score block occurs once in the store")


def _curve_pages(database: Path, table: str = "blocks") -> list[int]:
    """Offsets of the middle of the curves' leaf pages more than half full (their second half
    is cells), at a quarter, a half and three quarters of the table."""
    with contextlib.closing(sqlite3.connect(database)) as connection:
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        try:
            pages = [
                p
                for (p,) in connection.execute(
                    "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno", (table,)
                )
            ]
        except sqlite3.OperationalError:
            pytest.skip("this SQLite has no dbstat table")
    content = database.read_bytes()
    full = [
        p
        for p in pages
        if struct.unpack(">H", content[(p - 1) * page_size + 5 : (p - 1) * page_size + 7])[0] <= page_size // 2
    ]
    assert len(full) >= 4, "the tiny study's curves fill several pages"
    return [(full[len(full) * k // 4] - 1) * page_size + page_size // 2 for k in (1, 2, 3)]


def _damage_the_store(database: Path, where: str) -> None:
    """512 random bytes around a stored score value or in the middle of a curve page, or one
    flipped bit of a stored score value (which leaves every page well formed)."""
    if where == "a-bit-of-a-score":
        offset = _a_stored_score(database)  # the least significant byte of the float32
        with open(database, "r+b") as file:
            file.seek(offset)
            byte = file.read(1)[0]
            file.seek(offset)
            file.write(bytes([byte ^ 1]))
        return
    offset = _a_stored_score(database) - 256 if where == "a-score-value" else _curve_pages(database)[int(where[-1]) - 1]
    damage(database, offset, seed=offset)


@pytest.mark.slow  # the tiny study fixture, and reports
@pytest.mark.parametrize("where", ["a-score-value", "page-1", "page-2", "page-3", "a-bit-of-a-score"])
def test_damage_to_the_store_is_refused_as_damaged(study: Path, intact: dict[str, object], where: str) -> None:
    _damage_the_store(study / store_module.DATABASE, where)
    exported = invoke("export", study)
    error = refused_as_damaged(exported)  # it reads every curve
    assert not (study / "curves.csv").exists() and not (study / "curves.csv.partial").exists()
    if where == "a-bit-of-a-score":  # SQLite finds nothing wrong: the checksums do
        assert "does not match its checksums" in error and "score values" in error, error
    status = invoke("status", study)
    report = invoke("report", study)
    if where in ("a-score-value", "a-bit-of-a-score"):  # a speed metric: what status and the report compute from
        status_refused_as_damaged(status)
        refused_as_damaged(report)
    if status.exit_code == 0:  # what it read was not damaged: the numbers are exactly the intact ones
        assert status_rows(status.output) == intact["status"]
    else:
        status_refused_as_damaged(status)
    if report.exit_code == 0:
        assert (study / "summary.md").read_text() == intact["summary"]
    else:
        refused_as_damaged(report)
        assert not any((study / name).exists() for name in ("report.html", "summary.md", "report.html.partial"))


@pytest.mark.slow  # the tiny study fixture, and a report
def test_a_format_2_study_still_reads(study: Path, intact: dict[str, object]) -> None:
    to_long_form(study, 2)
    status = invoke("status", study)
    assert status.exit_code == 0 and status_rows(status.output) == intact["status"], status.output
    assert invoke("export", study).exit_code == 0
    assert (study / "curves.csv").read_bytes() == intact["csv"]
    report = invoke("report", study)
    assert report.exit_code == 0, report.output
    assert (study / "summary.md").read_text() == intact["summary"]
    damage(study / store_module.DATABASE, _curve_pages(study / store_module.DATABASE, "curves")[1], seed=1)
    refused_as_damaged(invoke("export", study))  # SQLite's check still guards it
