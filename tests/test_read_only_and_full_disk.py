"""A study on a read-only mount can still be read, and a folder that cannot take what a
command writes (read-only, full) is one line naming it, exit code 2; a study stopped by a
full disk resumes, once there is room, to the uninterrupted result.

As root the read-only folder is a tmpfs mounted read-only (root ignores permission bits);
otherwise it is a copy without write permission. The full disk needs a small tmpfs, so
root: elsewhere that test is skipped, saying why."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_folder_safety import invoke, refused, tree
from test_study import TINY_SPEC, store_contents

from regspeed.study import store as store_module

pytestmark = pytest.mark.slow  # the tiny study fixture (about 20 s) and a study on a full disk

SIDE_FILES = tuple(store_module.DATABASE + suffix for suffix in store_module.SIDE_FILES)


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A fresh tmpfs of ``size`` mounted at ``where`` (root only; skips the test otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; this test runs where the suite runs as root (CI)")
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"root could not mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


@contextlib.contextmanager
def unwritable_copy(study: Path, tmp_path: Path, side_files: dict[str, bytes | None]) -> Iterator[Path]:
    """A copy of ``study`` that cannot be written, its SQLite side files set to
    ``side_files`` (name -> bytes, or None for absent)."""

    def copy_into(parent: Path) -> Path:
        folder = parent / "study"
        shutil.copytree(study, folder)
        for name, content in side_files.items():
            (folder / name).unlink(missing_ok=True)
            if content is not None:
                (folder / name).write_bytes(content)
        return folder

    if os.geteuid() == 0:
        with tmpfs(tmp_path / "mount", "50m") as mount:
            folder = copy_into(mount)
            subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
            yield folder
        return
    folder = copy_into(tmp_path)
    everything = [folder, *folder.rglob("*")]
    for path in everything:
        path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield folder
    finally:
        for path in everything:
            path.chmod(0o755 if path.is_dir() else 0o644)


SHM, WAL = SIDE_FILES[1], SIDE_FILES[0]


@pytest.fixture(params=["without side files", "with side files"])
def read_only_study(request: pytest.FixtureRequest, tiny_study: Path, tmp_path: Path) -> Iterator[Path]:
    """A copy of the finished tiny study that cannot be written: with and without the
    ``-shm`` / ``-wal`` files SQLite leaves beside a store in WAL mode."""
    side_files = {SHM: None, WAL: None} if request.param == "without side files" else {SHM: bytes(32768), WAL: b""}
    with unwritable_copy(tiny_study, tmp_path, side_files) as folder:
        yield folder


def test_reading_commands_work_on_a_read_only_study(read_only_study: Path, tiny_study: Path, tmp_path: Path) -> None:
    before = tree(read_only_study)
    status = invoke("status", read_only_study)
    assert status.exit_code == 0 and "l2@0.01" in status.output, status.output

    assert invoke("export", read_only_study, "--out", tmp_path / "read-only.csv").exit_code == 0
    assert invoke("export", tiny_study, "--out", tmp_path / "writable.csv").exit_code == 0
    assert (tmp_path / "read-only.csv").read_bytes() == (tmp_path / "writable.csv").read_bytes()

    for source, out in ((read_only_study, tmp_path / "read-only report"), (tiny_study, tmp_path / "writable report")):
        reported = invoke("report", source, "--out", out)
        assert reported.exit_code == 0, reported.output
    assert (tmp_path / "read-only report" / "summary.md").read_text() == (
        tmp_path / "writable report" / "summary.md"
    ).read_text()

    watched = invoke("watch", read_only_study, "--max-steps", "3", "--delay", "0")
    assert watched.exit_code == 0 and "none seed" in watched.output, watched.output
    assert tree(read_only_study) == before


def test_writing_commands_on_a_read_only_study_are_one_line(read_only_study: Path, tmp_path: Path) -> None:
    before = tree(read_only_study)
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text(TINY_SPEC)
    reason = "read-only" if os.geteuid() == 0 else "permission denied"
    for command in (
        ["study", spec_file, "--out", read_only_study],
        ["report", read_only_study],
        ["export", read_only_study],
        ["train", "--out", read_only_study],  # refused before it compiles, not after it trained
    ):
        refused(invoke(*command), f"cannot write to {read_only_study}:", reason, "run the same command again")
    assert tree(read_only_study) == before


def test_a_read_only_study_whose_wal_still_holds_writes_is_one_line(tiny_study: Path, tmp_path: Path) -> None:
    with unwritable_copy(tiny_study, tmp_path, {SHM: None, WAL: b"writes not yet in the database"}) as folder:
        refused(invoke("status", folder), "still in study.sqlite-wal", "copy the folder somewhere writable")


def test_a_full_disk_stops_the_study_in_one_line_and_it_resumes_identically(tiny_study: Path, tmp_path: Path) -> None:
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text(TINY_SPEC)
    with tmpfs(tmp_path / "small", "400k") as mount:
        folder = mount / "study"
        full = invoke("study", spec_file, "--out", folder)
        assert full.exit_code == 2, full.output
        line = full.output.strip().splitlines()[-1]
        assert line.startswith(f"error: out: cannot write to {folder}") and "the disk is full" in line, full.output
        assert "Traceback" not in full.output
        stored = store_contents(folder)
        assert 0 < stored["batches"][0][3] < stored["batches"][0][2], "the disk should fill in the middle of batch 0"

        subprocess.run(["mount", "-o", "remount,size=50m", str(mount)], check=True)
        assert invoke("study", spec_file, "--out", folder).exit_code == 0
        assert store_contents(folder) == store_contents(tiny_study)
