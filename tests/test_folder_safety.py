"""A study folder someone sends you cannot make regspeed write, read or delete outside it:
planted symbolic links are never followed, checkpoint names read from a store are checked,
a folder that is not a study is refused before anything is written, and a file named
``study.sqlite`` that is not a study of ours is refused and left byte for byte as it was."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result
from test_study import TINY_SPEC, store_contents, tiny_spec
from typer.testing import CliRunner

from regspeed.cli import app
from regspeed.errors import ConfigError
from regspeed.learn import checkpoint
from regspeed.study import files, runner
from regspeed.study import store as store_module

PRECIOUS = b"the user's own bytes\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside every study folder that nothing may change."""
    path = tmp_path / "outside.txt"
    path.write_bytes(PRECIOUS)
    return path


@pytest.fixture
def study(tiny_study: Path, tmp_path: Path) -> Path:
    """A copy of the finished tiny study, to tamper with."""
    folder = tmp_path / "sent" / "study"
    shutil.copytree(tiny_study, folder, symlinks=True)
    return folder


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_SPEC)
    return path


def snapshot(path: Path) -> tuple[bytes, int]:
    """A file's bytes and modification time: equal snapshots mean it was not written."""
    return path.read_bytes(), path.stat().st_mtime_ns


def tree(folder: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every entry under ``folder`` with its snapshot (None for folders and links)."""
    return {
        str(path.relative_to(folder)): None if path.is_dir() or path.is_symlink() else snapshot(path)
        for path in sorted(folder.rglob("*"))
    }


def refused(result: Result, *words: str) -> str:
    """Assert a command ended with one line ``error: ...`` holding ``words`` and exit code 2."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def sql(folder: Path, *statements: str) -> None:
    """Tamper with a study's store (the connection is closed, so the file is whole afterwards)."""
    with contextlib.closing(sqlite3.connect(folder / store_module.DATABASE)) as connection, connection:
        for statement in statements:
            connection.execute(statement)


def invoke(*arguments: str | Path) -> Result:
    return CliRunner().invoke(app, [str(argument) for argument in arguments])


# ------------------------------------------------------------------- the safe-file helper


def test_a_planted_partial_link_is_removed_not_followed(tmp_path: Path, outside: Path) -> None:
    target = tmp_path / "written.txt"
    target.with_name("written.txt.partial").symlink_to(outside)
    with files.replacing(target, "out", text=True) as file:
        file.write("ours\n")
    assert target.read_text() == "ours\n" and not target.is_symlink()
    assert outside.read_bytes() == PRECIOUS
    assert not target.with_name("written.txt.partial").exists()


def test_a_final_name_that_is_a_link_is_refused(tmp_path: Path, outside: Path) -> None:
    target = tmp_path / "written.txt"
    target.symlink_to(outside)
    with pytest.raises(ConfigError, match=r"^out: .*written.txt is a symbolic link"), files.replacing(target, "out"):
        pass
    assert outside.read_bytes() == PRECIOUS and target.is_symlink()


def test_a_failed_write_leaves_the_old_file_and_no_partial(tmp_path: Path) -> None:
    target = tmp_path / "written.txt"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), files.replacing(target, "out", text=True) as file:
        file.write("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old\n" and sorted(tmp_path.iterdir()) == [target]


def test_checkpoint_save_does_not_follow_a_planted_partial(tmp_path: Path, outside: Path) -> None:
    path = tmp_path / "batch-0000-update-0000004.npz"
    path.with_name(path.name + ".partial").symlink_to(outside)
    checkpoint.save(path, {"leaf_0": np.arange(3), "format_version": np.asarray(checkpoint.FORMAT_VERSION)})
    assert outside.read_bytes() == PRECIOUS
    with np.load(path) as data:
        np.testing.assert_array_equal(data["leaf_0"], np.arange(3))


def test_store_creation_does_not_follow_a_planted_partial(tmp_path: Path, outside: Path) -> None:
    folder = tmp_path / "new"
    folder.mkdir()
    (folder / (store_module.DATABASE + ".partial")).symlink_to(outside)
    with store_module.Store.create(folder, {"spec_json": "{}"}, [], [], []) as store:
        assert store.meta()["format_version"] == str(store_module.FORMAT_VERSION)
    assert outside.read_bytes() == PRECIOUS
    assert not (folder / store_module.DATABASE).is_symlink()


@pytest.mark.parametrize("name", ["../../x.npz", "/tmp/x.npz", "batch-0000-update-0000004.npz/..", "model.pt", ""])
def test_a_checkpoint_name_must_be_one_of_ours(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=r"^study: .* is damaged"):
        files.checkpoint_path(tmp_path, name)


def test_a_checkpoint_link_leading_out_of_the_folder_is_refused(tmp_path: Path, outside: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "batch-0000-update-0000004.npz").symlink_to(outside)
    with pytest.raises(ConfigError, match=r"^study: .* is damaged"):
        files.checkpoint_path(tmp_path, "batch-0000-update-0000004.npz")
    name = "batch-0001-update-12345678.npz"  # past 9,999,999 updates the number grows a digit
    assert files.checkpoint_path(tmp_path, name) == tmp_path / "checkpoints" / name


def test_only_our_own_leftovers_count_as_an_empty_folder(tmp_path: Path) -> None:
    assert files.foreign_entries(tmp_path / "missing") == []
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "study.lock").write_text("")
    (tmp_path / "study.sqlite.partial").write_text("")
    (tmp_path / "checkpoints" / "batch-0000-update-0000004.npz.partial").write_text("")
    assert files.foreign_entries(tmp_path) == []
    (tmp_path / "checkpoints" / "model.pt").write_text("")
    (tmp_path / "notes.txt").write_text("")
    assert files.foreign_entries(tmp_path) == ["checkpoints/model.pt", "notes.txt"]


# -------------------------------------------------------------- planted links in a study


@pytest.mark.slow  # the tiny study fixture
@pytest.mark.parametrize("name", ["report.html.partial", "summary.md.partial"])
def test_report_writes_past_a_planted_partial_link(study: Path, outside: Path, name: str) -> None:
    (study / name).unlink(missing_ok=True)  # the shared tiny study may hold one already
    (study / name).symlink_to(outside)
    result = invoke("report", study)
    assert result.exit_code == 0, result.output
    assert outside.read_bytes() == PRECIOUS
    assert (study / "report.html").is_file() and not (study / "report.html").is_symlink()
    assert not (study / name).exists() and not (study / name).is_symlink()


@pytest.mark.slow  # the tiny study fixture
@pytest.mark.parametrize("name", ["report.html", "summary.md"])
def test_report_refuses_to_replace_a_planted_link(study: Path, outside: Path, name: str) -> None:
    (study / name).unlink(missing_ok=True)  # the shared tiny study may hold one already
    (study / name).symlink_to(outside)
    before = snapshot(outside)
    refused(invoke("report", study), f"{name} is a symbolic link")
    assert snapshot(outside) == before and (study / name).is_symlink()


@pytest.mark.slow  # the tiny study fixture
@pytest.mark.parametrize(
    ("arguments", "name"),
    [((), "curves.csv"), (("--format", "npz", "--metric", "score"), "score.npz")],
    ids=["csv", "npz"],
)
def test_export_neither_follows_nor_replaces_a_planted_link(
    study: Path, outside: Path, arguments: tuple[str, ...], name: str
) -> None:
    (study / name).unlink(missing_ok=True)  # the shared tiny study may hold one already
    (study / name).symlink_to(outside)
    before = snapshot(outside)
    refused(invoke("export", study, *arguments), "out:", f"{name} is a symbolic link")
    assert snapshot(outside) == before
    (study / name).unlink()
    (study / (name + ".partial")).unlink(missing_ok=True)  # the shared tiny study may hold one already
    (study / (name + ".partial")).symlink_to(outside)
    result = invoke("export", study, *arguments)
    assert result.exit_code == 0, result.output
    assert snapshot(outside) == before
    assert (study / name).is_file() and not (study / name).is_symlink() and (study / name).stat().st_size > 0


@pytest.mark.slow  # the tiny study fixture
def test_study_refuses_a_lock_that_is_a_link(study: Path, outside: Path, spec_file: Path) -> None:
    (study / store_module.LOCK).unlink(missing_ok=True)
    (study / store_module.LOCK).unlink(missing_ok=True)  # the shared tiny study may hold one already
    (study / store_module.LOCK).symlink_to(outside)
    before = snapshot(outside)
    refused(invoke("study", spec_file, "--out", study), "study.lock is a symbolic link")
    assert snapshot(outside) == before


# ---------------------------------------------------------- checkpoint names from a store


def _name_leading_out(study: Path, kind: str) -> tuple[Path, str]:
    """A valid checkpoint outside the study, and the name that reaches it from the store."""
    target = study.parent / "x.npz"
    shutil.copyfile(next((study / store_module.CHECKPOINTS).glob("batch-0000-*.npz")), target)
    return target, "../../x.npz" if kind == "relative" else str(target)


def _unfinish_batch_zero(study: Path, checkpoint_name: str) -> None:
    """Batch 0 stopped at update 116 of 120, its checkpoint named ``checkpoint_name``."""
    sql(
        study,
        "DELETE FROM blocks WHERE batch_id = 0 AND updates_done > 116",
        "UPDATE runs SET status = 'running', updates_done = 116 WHERE batch_id = 0",
        f"UPDATE batches SET updates_done = 116, checkpoint = '{checkpoint_name}' WHERE batch_id = 0",
    )


@pytest.mark.slow  # the tiny study fixture
@pytest.mark.parametrize("kind", ["relative", "absolute"])
@pytest.mark.parametrize("command", ["watch", "report", "study"])
def test_a_checkpoint_name_leading_out_of_the_folder_is_refused(
    study: Path, spec_file: Path, kind: str, command: str
) -> None:
    target, name = _name_leading_out(study, kind)
    _unfinish_batch_zero(study, name)
    before = snapshot(target)
    arguments = {
        "watch": ("watch", study, "--condition", "none", "--seed", "0", "--gif", study.parent / "run.gif"),
        "report": ("report", study),
        "study": ("study", spec_file, "--out", study),
    }[command]
    refused(invoke(*arguments), "study:", "is damaged", repr(name))
    assert snapshot(target) == before
    assert not (study.parent / "run.gif").exists()


# ------------------------------------------------------------ folders that are not studies


@pytest.mark.parametrize("user_file", ["checkpoints/model.pt", "notes.txt"])
def test_study_refuses_a_folder_that_is_not_a_study(tmp_path: Path, spec_file: Path, user_file: str) -> None:
    folder = tmp_path / "mine"
    (folder / user_file).parent.mkdir(parents=True, exist_ok=True)
    (folder / user_file).write_bytes(PRECIOUS)
    before = tree(folder)
    refused(invoke("study", spec_file, "--out", folder), "out:", "holds no study", user_file)
    assert tree(folder) == before
    with pytest.raises(ConfigError, match=r"^out: "):
        runner.run(tiny_spec(), folder, TINY_SPEC)
    assert tree(folder) == before


@pytest.mark.slow  # trains one batch of the tiny study
def test_resuming_deletes_only_our_own_stale_checkpoints(
    study: Path, tiny_study: Path, outside: Path, spec_file: Path
) -> None:
    sql(
        study,
        "DELETE FROM blocks WHERE batch_id = 0",
        "UPDATE runs SET status = 'pending', updates_done = 0, wall_seconds = 0, started = NULL, finished = NULL "
        "WHERE batch_id = 0",
        "UPDATE batches SET updates_done = 0, checkpoint = NULL WHERE batch_id = 0",
    )
    checkpoints = study / store_module.CHECKPOINTS
    (checkpoints / "model.pt").write_bytes(PRECIOUS)
    (checkpoints / "batch-0000-update-0000008.npz.partial").symlink_to(outside)
    (checkpoints / "batch-0000-update-0000999.npz").write_bytes(b"stale")
    (study / "notes.txt").write_bytes(PRECIOUS)
    users = {path: snapshot(path) for path in (outside, checkpoints / "model.pt", study / "notes.txt")}
    outcome = runner.run(tiny_spec(), study, TINY_SPEC)
    assert not outcome.already_finished and outcome.runs_failed == 0
    assert {path: snapshot(path) for path in users} == users
    assert not (checkpoints / "batch-0000-update-0000999.npz").exists()
    assert not (checkpoints / "batch-0000-update-0000008.npz.partial").is_symlink()
    assert store_contents(study) == store_contents(tiny_study)


# ---------------------------------------------------- files named study.sqlite that are not ours


def _foreign(folder: Path) -> None:
    with contextlib.closing(sqlite3.connect(folder / store_module.DATABASE)) as connection, connection:
        connection.execute("CREATE TABLE people (name TEXT)")
        connection.execute("INSERT INTO people VALUES ('ada')")


def _empty(folder: Path) -> None:
    (folder / store_module.DATABASE).write_bytes(b"")


COMMANDS = ["status", "report", "export", "study", "watch"]


def _arguments(command: str, folder: Path, spec_file: Path) -> tuple[str | Path, ...]:
    if command == "study":
        return ("study", spec_file, "--out", folder)
    if command == "watch":
        return ("watch", folder, "--seed", "0", "--gif", folder.parent / "run.gif")
    return (command, folder)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("make", [_foreign, _empty], ids=["foreign-sqlite", "empty-file"])
def test_a_study_sqlite_that_is_not_ours_is_refused_and_left_as_it_was(
    tmp_path: Path, spec_file: Path, command: str, make: object
) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir()
    make(folder)  # type: ignore[operator]
    before = tree(folder)
    refused(invoke(*_arguments(command, folder, spec_file)), "study:", "not a regspeed study")
    assert tree(folder) == before


@pytest.mark.slow  # the tiny study fixture
@pytest.mark.parametrize("command", COMMANDS)
def test_a_store_without_its_spec_is_refused_and_left_as_it_was(study: Path, spec_file: Path, command: str) -> None:
    sql(study, "DELETE FROM meta WHERE key = 'spec_json'")
    database = study / store_module.DATABASE
    before = snapshot(database)
    refused(invoke(*_arguments(command, study, spec_file)), "study:", "is incomplete", "spec_json")
    assert snapshot(database) == before
    assert not (study / "report.html.partial").exists()


def test_a_store_of_another_format_is_refused_with_one_line(tmp_path: Path, spec_file: Path) -> None:
    with store_module.Store.create(tmp_path, {"spec_json": "{}"}, [], [], []):
        pass
    sql(tmp_path, "UPDATE meta SET value = 'one' WHERE key = 'format_version'")
    before = snapshot(tmp_path / store_module.DATABASE)
    refused(invoke("status", tmp_path), "study:", "store format 'one'")
    assert snapshot(tmp_path / store_module.DATABASE) == before


def test_opening_for_reading_never_writes_the_store(tmp_path: Path) -> None:
    with store_module.Store.create(tmp_path, {"spec_json": "{}"}, [], [], []):
        pass
    before = snapshot(tmp_path / store_module.DATABASE)
    with store_module.Store.open(tmp_path) as store, pytest.raises(sqlite3.OperationalError, match="readonly"):
        store.connection.execute("INSERT INTO metrics (name) VALUES ('x')")
    assert snapshot(tmp_path / store_module.DATABASE) == before
    assert os.access(tmp_path / store_module.DATABASE, os.W_OK)
