"""Ctrl-C: long commands stop at the next safe point with one line and exit code 130, never
a crash or a traceback; a second Ctrl-C stops at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

TRAIN = ["train", "--rows", "5", "--cols", "5", "--observation", "features", "--hidden", "16", "--num-envs", "8"]
TRAIN += ["--rollout-steps", "16", "--steps", "100000000", "--eval-every", "5"]


def start(arguments: list[str], folder: Path) -> subprocess.Popen:
    """``regspeed ARGUMENTS`` in a child process (its own process group, like a shell job)."""
    return subprocess.Popen(
        [sys.executable, "-m", "regspeed.cli", *arguments],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.slow
def test_ctrl_c_stops_training_after_a_checkpoint_with_exit_130(tmp_path: Path) -> None:
    process = start([*TRAIN, "--out", str(tmp_path / "run")], tmp_path)
    wait_for(lambda: (tmp_path / "run" / "checkpoint.npz").exists(), process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted; the training state so far is in" in stderr and "Traceback" not in stderr


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    process = start([*TRAIN, "--out", str(tmp_path / "run")], tmp_path)
    wait_for(lambda: (tmp_path / "run").exists(), process)  # past validation: the handler is installed
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_ctrl_c_stops_a_study_after_a_stored_chunk_and_the_same_command_resumes_it(tmp_path: Path) -> None:
    from test_study import TINY_SPEC

    from regspeed.study import store as store_module

    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_SPEC.replace("budget = 15_360", "budget = 61_440"))  # 480 updates: still running
    folder = tmp_path / "study"
    process = start(["study", str(spec), "--out", str(folder)], tmp_path)

    def a_chunk_is_stored() -> bool:
        if not (folder / store_module.DATABASE).exists():
            return False
        with store_module.Store.open(folder) as store:
            return any(batch.updates_done > 0 for batch in store.batches())

    wait_for(a_chunk_is_stored, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted; every finished chunk is stored; run the same command to resume" in stderr
    assert "Traceback" not in stderr
    with store_module.Store.open(folder) as store:
        assert not all(batch.updates_done == batch.total_updates for batch in store.batches())
    resumed = start(["study", str(spec), "--out", str(folder)], tmp_path)
    resumed.communicate(timeout=600)
    assert resumed.returncode == 0
    with store_module.Store.open(folder) as store:
        assert all(run.status == "finished" for run in store.runs())
