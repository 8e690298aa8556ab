"""Sequential studies in the runner: seeds in waves, the next wave decided by a callback
(the analysis's, in `regspeed study`), planned like the first and added in one transaction;
a study killed at any point resumes to the uninterrupted result."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_study import TINY_SPEC, checkpoints, store_contents

from regspeed.errors import ConfigError
from regspeed.study import results, runner
from regspeed.study import spec as spec_module
from regspeed.study import store as store_module

# the tiny study (2 seeds) with looks at 2, 4 and 6 seeds per condition
SEQUENTIAL_SPEC = TINY_SPEC.replace("[execution]\n", "[execution]\nsequential = true\nmax_seeds = 6\n")
REGULARIZED = ["l2@0.001", "l2@0.01"]
UPDATES = 120  # per batch


def sequential_spec(text: str = SEQUENTIAL_SPEC) -> spec_module.Spec:
    return spec_module.parse(text, "sequential.toml")


def scripted(store: store_module.Store) -> list[str]:
    """A deterministic ``next_wave``: l2@0.01 goes on after the first look, nothing after the second."""
    return ["l2@0.01"] if runner.planned_seeds(store)["none"] == 2 else []


def every_condition(store: store_module.Store) -> list[str]:
    """A ``next_wave`` that never decides anything: every wave has every condition."""
    return list(REGULARIZED)


class Recorded:
    """A ``next_wave`` that records the runs (condition, seed, status) each call saw."""

    def __init__(self, decide: runner.NextWave) -> None:
        self.decide = decide
        self.seen: list[list[tuple[str, int, str]]] = []

    def __call__(self, store: store_module.Store) -> list[str]:
        self.seen.append([(run.condition, run.seed, run.status) for run in store.runs()])
        return self.decide(store)


def planned(folder: Path) -> list[tuple[list[str], list[tuple[str, int]]]]:
    """Each stored batch: its conditions and its runs (condition, seed) in position order."""
    with store_module.Store.open(folder) as store:
        runs = sorted(store.runs(), key=lambda run: (run.batch, run.position))
        return [
            (batch.conditions, [(run.condition, run.seed) for run in runs if run.batch == batch.batch_id])
            for batch in store.batches()
        ]


@pytest.fixture(scope="module")
def sequential_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Recorded, list[list[int]]]:
    """The sequential tiny study with :func:`scripted` waves, run once, uninterrupted: its folder,
    the calls of ``next_wave`` and the batches of each ``on_start``."""
    folder = tmp_path_factory.mktemp("sequential") / "study"
    waves = Recorded(scripted)
    started: list[list[int]] = []
    on_start = lambda store, jobs: started.append([job.batch_id for job in jobs])  # noqa: E731
    outcome = runner.run(sequential_spec(), folder, SEQUENTIAL_SPEC, on_start=on_start, next_wave=waves)
    assert not outcome.already_finished and outcome.runs_total == 10 and outcome.runs_failed == 0
    return folder, waves, started


# ------------------------------------------------------------------------- fast: no training


def test_a_sequential_spec_without_next_wave_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        runner.run(sequential_spec(), tmp_path / "out", SEQUENTIAL_SPEC)
    assert caught.value.field == "execution.sequential"
    assert "next_wave=lambda store: sequential.next_wave(results.load(store))" in str(caught.value)
    assert "\n" not in str(caught.value) and not (tmp_path / "out").exists()  # refused before anything is written


def test_a_sequential_study_is_created_with_its_first_wave_only(tmp_path: Path) -> None:
    with runner._open_or_create(sequential_spec(), tmp_path / "sequential", SEQUENTIAL_SPEC) as store:
        assert runner.planned_seeds(store) == {"none": 2, "l2@0.001": 2, "l2@0.01": 2}
    # the same plan as the study that is not sequential: the first wave is its whole plan
    with runner._open_or_create(spec_module.parse(TINY_SPEC), tmp_path / "fixed", TINY_SPEC):
        pass
    assert planned(tmp_path / "sequential") == planned(tmp_path / "fixed")


def test_waves_are_planned_like_the_first_numbered_on_and_stop_at_max_seeds(tmp_path: Path) -> None:
    spec = sequential_spec()
    calls = Recorded(lambda store: ["l2@0.01", "l2@0.001", "l2@0.01"])  # any order, repeats: study order counts
    with runner._open_or_create(spec, tmp_path / "waves", SEQUENTIAL_SPEC) as store:
        first_meta = store.meta()
        assert runner._add_next_wave(spec, store, calls)
        calls.decide = lambda store: ["l2@0.001"]
        assert runner._add_next_wave(spec, store, calls)
        assert not runner._add_next_wave(spec, store, calls)  # max_seeds reached: not even asked
        assert store.meta()["budget_steps"] == first_meta["budget_steps"]
    assert len(calls.seen) == 2
    assert planned(tmp_path / "waves")[2:] == [
        (["none"], [("none", 2), ("none", 3)]),
        (["l2@0.001", "l2@0.01"], [("l2@0.001", 2), ("l2@0.001", 3), ("l2@0.01", 2), ("l2@0.01", 3)]),
        (["none"], [("none", 4), ("none", 5)]),
        (["l2@0.001"], [("l2@0.001", 4), ("l2@0.001", 5)]),
    ]
    with runner._open_or_create(spec, tmp_path / "decided", SEQUENTIAL_SPEC) as store:
        assert not runner._add_next_wave(spec, store, lambda store: [])  # decided: no wave, nothing added
        assert runner.planned_seeds(store) == {"none": 2, "l2@0.001": 2, "l2@0.01": 2}


def test_the_plan_facts_cover_every_wave(tmp_path: Path) -> None:
    # three strengths at a cap of 5 runs: the first wave's 6 l2 runs are two batches of 3,
    # a second wave with two of them is one batch of 4, the largest of the study
    text = SEQUENTIAL_SPEC.replace("[1e-3, 1e-2]", "[1e-3, 1e-2, 1e-1]")
    spec = sequential_spec(text)
    per_run = spec_module.learner_of(spec).bytes_per_run(
        spec_module.setup(spec, runner.plan(spec).batches[1].regularizer).config
    )
    execution = spec.execution.model_copy(update={"memory_cap_gb": 5.5 * per_run / 2**30})
    spec = spec.model_copy(update={"execution": execution})
    with runner._open_or_create(spec, tmp_path, text) as store:
        assert json.loads(store.meta()["plan"])["largest_batch_estimate_gb"] == 3 * per_run / 2**30
        assert runner._add_next_wave(spec, store, lambda store: ["l2@0.1", "l2@0.01"])
        facts = json.loads(store.meta()["plan"])
    assert facts == {"memory_cap_gb": execution.memory_cap_gb, "largest_batch_estimate_gb": 4 * per_run / 2**30}
    assert [len(runs) for _, runs in planned(tmp_path)] == [2, 3, 3, 2, 4]


def test_a_wave_whose_runs_name_other_batches_is_refused_whole(tmp_path: Path) -> None:
    with runner._open_or_create(sequential_spec(), tmp_path, SEQUENTIAL_SPEC) as store:
        before = store_contents(tmp_path), store.meta()
        runs = [store_module.PlannedRun("none", 2, 2, 0), store_module.PlannedRun("none", 3, 1, 1)]
        with pytest.raises(ValueError, match=r"runs of a new wave name batches \[1\], not its 2 to 2"):
            store.add_wave([(["none"], UPDATES)], runs, {"plan": "{}"})
        assert (store_contents(tmp_path), store.meta()) == before


@pytest.mark.parametrize(
    ("named", "problem"),
    [
        (["none"], "'none' is the baseline, which is in every wave"),
        (["l2@0.5"], "'l2@0.5' is not a condition of the study"),
        (["l2@0.01", "l2@0.001"], "'l2@0.001' stopped at 2 seeds"),
    ],
)
def test_next_wave_may_name_only_regularized_conditions_still_running(
    tmp_path: Path, named: list[str], problem: str
) -> None:
    spec = sequential_spec()
    with runner._open_or_create(spec, tmp_path, SEQUENTIAL_SPEC) as store:
        assert runner._add_next_wave(spec, store, scripted)  # l2@0.001 stops at the first look
        before = planned(tmp_path)
        with pytest.raises(ValueError, match=f"next_wave named conditions that cannot have wave 3: {problem}$"):
            runner._add_next_wave(spec, store, lambda store: named)
    assert planned(tmp_path) == before


def test_the_progress_display_grows_with_each_wave(tmp_path: Path) -> None:
    from regspeed.cli.study import _StudyProgress

    spec = sequential_spec()
    with runner._open_or_create(spec, tmp_path, SEQUENTIAL_SPEC) as store, _StudyProgress(spec) as progress:
        progress.start(store, runner._jobs(spec, store, print))
        first = progress.progress.tasks[0]
        assert (first.description, first.total) == ("study, look 1/3", 6 * UPDATES)
        for batch in (0, 1):
            store.record_chunk(batch, UPDATES, {}, [], {}, f"batch-{batch:04d}-update-{UPDATES:07d}.npz", 1.0, True)
        assert runner._add_next_wave(spec, store, scripted)
        progress.start(store, runner._jobs(spec, store, print))
        study = progress.progress.tasks[0]
        assert (study.description, study.total, study.completed) == ("study, look 2/3", 10 * UPDATES, 6 * UPDATES)
        assert [task.description for task in progress.progress.tasks[1:]] == [
            "batch 1/2: none",  # as planned when they started
            "batch 2/2: l2@0.001, l2@0.01",
            "batch 3/4: none",
            "batch 4/4: l2@0.01",
        ]


# ---------------------------------------------------------------------------- running waves


@pytest.mark.slow  # the tiny study and one more compilation: about 40 s
def test_waves_run_until_next_wave_names_none(
    sequential_study: tuple[Path, Recorded, list[list[int]]], tiny_study: Path
) -> None:
    folder, waves, started = sequential_study
    assert planned(folder)[2:] == [
        (["none"], [("none", 2), ("none", 3)]),
        (["l2@0.01"], [("l2@0.01", 2), ("l2@0.01", 3)]),
    ]
    assert started == [[0, 1], [2, 3]]
    # asked twice, after each wave, seeing every run of the planned waves ended
    first = [(c, s, "finished") for c in ("none", "l2@0.001", "l2@0.01") for s in (0, 1)]
    second = sorted([*first, *((c, s, "finished") for c in ("none", "l2@0.01") for s in (2, 3))])
    assert waves.seen[0] == first and sorted(waves.seen[1]) == second and len(waves.seen) == 2
    with store_module.Store.open(folder) as store:
        assert runner.planned_seeds(store) == {"none": 4, "l2@0.001": 2, "l2@0.01": 4}
        assert all(run.status == "finished" and run.updates_done == UPDATES for run in store.runs())
        data = results.load(store)
        meta, fixed_meta = store.meta(), _meta(tiny_study)
    assert data.looks == (2, 4, 6) and len(data.curves_of("score")["l2@0.01"].seeds) == 4
    assert (meta["plan"], meta["budget_steps"]) == (fixed_meta["plan"], fixed_meta["budget_steps"])
    # the first wave is the study that is not sequential, bit for bit
    sequential, fixed = store_contents(folder), store_contents(tiny_study)
    assert sequential["runs"][:6] == fixed["runs"]
    assert sequential["batches"][:2] == fixed["batches"]
    assert [row for row in sequential["curves"] if row[0] <= 6] == fixed["curves"]
    # finished: a rerun asks again (the same answer), runs nothing and writes nothing
    stamp = (folder / store_module.DATABASE).stat().st_mtime_ns
    again = Recorded(scripted)
    assert runner.run(sequential_spec(), folder, SEQUENTIAL_SPEC, next_wave=again).already_finished
    assert len(again.seen) == 1 and store_contents(folder) == sequential
    assert (folder / store_module.DATABASE).stat().st_mtime_ns == stamp


def _meta(folder: Path) -> dict[str, str]:
    with store_module.Store.open(folder) as store:
        return store.meta()


@pytest.mark.slow  # the tiny study's compilations when run alone: about 35 s
def test_a_study_that_never_decides_runs_to_max_seeds(tmp_path: Path) -> None:
    waves = Recorded(every_condition)
    outcome = runner.run(sequential_spec(), tmp_path, SEQUENTIAL_SPEC, next_wave=waves)
    assert outcome.runs_total == 18 and not outcome.already_finished
    assert len(waves.seen) == len(sequential_spec().looks()) - 1
    with store_module.Store.open(tmp_path) as store:
        assert runner.planned_seeds(store) == {"none": 6, "l2@0.001": 6, "l2@0.01": 6}
        assert all(run.status == "finished" for run in store.runs())
    assert runner.run(sequential_spec(), tmp_path, SEQUENTIAL_SPEC, next_wave=waves).already_finished
    assert len(waves.seen) == 2  # the last look is planned: next_wave is not asked


# --------------------------------------------------------------------------- kill and resume

# `runner.run` with :func:`scripted` waves; the first call of next_wave kills the process
# unless MARKER exists (it is created first), and chunks of the second wave are slowed so
# that a poll can stop it in the middle of a batch
CHILD = """
import os, signal, sys, time
from pathlib import Path
from regspeed.study import runner
from regspeed.study import spec as spec_module

spec_path, folder, marker = map(Path, sys.argv[1:4])
text = spec_path.read_text()

def next_wave(store):
    if not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return ["l2@0.01"] if runner.planned_seeds(store)["none"] == 2 else []

def on_chunk(outcome, runs):
    if outcome.batch_id >= 2:
        time.sleep(0.02)

runner.run(spec_module.parse(text, str(spec_path)), folder, text, next_wave=next_wave, on_chunk=on_chunk)
"""


def start_child(tmp_path: Path, folder: Path, marker: Path) -> subprocess.Popen:
    """:data:`CHILD` on ``folder``."""
    spec_path = tmp_path / "sequential.toml"
    spec_path.write_text(SEQUENTIAL_SPEC)
    arguments = [sys.executable, "-c", CHILD, str(spec_path), str(folder), str(marker)]
    return subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def batch_updates(folder: Path, batch_id: int) -> int:
    """How far a batch of a running study has got (0 before it is planned, or while the store is busy)."""
    if not (folder / store_module.DATABASE).exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(folder / store_module.DATABASE, timeout=5)) as connection:
            found = connection.execute("SELECT updates_done FROM batches WHERE batch_id = ?", (batch_id,)).fetchone()
    except sqlite3.OperationalError:
        return 0
    return 0 if found is None else int(found[0])


class FirstLookError(Exception):
    """Raised by a ``next_wave`` to stop a study when it first asks."""


def stop_at_the_first_look(store: store_module.Store) -> list[str]:
    """A ``next_wave`` that stops the study."""
    raise FirstLookError


@pytest.fixture(scope="module")
def first_wave_done(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sequential tiny study stopped (by an exception from ``next_wave``) when it first asks
    for the next wave: its first wave finished, the second not planned. Made in this process,
    whose compiled programs the child processes below would otherwise compile again."""
    folder = tmp_path_factory.mktemp("first-wave") / "study"
    with pytest.raises(FirstLookError):
        runner.run(sequential_spec(), folder, SEQUENTIAL_SPEC, next_wave=stop_at_the_first_look)
    assert [len(runs) for _, runs in planned(folder)] == [2, 4]
    return folder


@pytest.mark.slow  # the tiny study fixture: about 35 s, a child process: 5 s
def test_killed_between_waves_resumes_to_the_uninterrupted_result(
    first_wave_done: Path, sequential_study: tuple[Path, Recorded, list[list[int]]], tmp_path: Path
) -> None:
    reference = sequential_study[0]
    folder = shutil.copytree(first_wave_done, tmp_path / "study")
    child = start_child(tmp_path, folder, tmp_path / "marker")  # killed when it asks for the second wave
    _, stderr = child.communicate(timeout=300)
    assert child.returncode == -signal.SIGKILL and (tmp_path / "marker").exists(), stderr
    assert planned(folder) == planned(first_wave_done)
    started: list[list[int]] = []
    on_start = lambda store, jobs: started.append([job.batch_id for job in jobs])  # noqa: E731
    outcome = runner.run(sequential_spec(), folder, SEQUENTIAL_SPEC, on_start=on_start, next_wave=scripted)
    assert not outcome.already_finished  # nothing was left to run, but a wave was added
    assert started == [[], [2, 3]]
    assert store_contents(folder) == store_contents(reference)
    assert_same_checkpoints(folder, reference)


@pytest.mark.slow  # a child process compiles a batch: about 20 s
def test_killed_in_the_middle_of_a_later_wave_resumes_to_the_uninterrupted_result(
    first_wave_done: Path, sequential_study: tuple[Path, Recorded, list[list[int]]], tmp_path: Path
) -> None:
    reference = sequential_study[0]
    folder = shutil.copytree(first_wave_done, tmp_path / "study")
    (tmp_path / "marker").touch()  # this child goes on: it plans the second wave and runs it
    child = start_child(tmp_path, folder, tmp_path / "marker")
    try:
        deadline = time.monotonic() + 240
        while batch_updates(folder, 2) == 0:
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.monotonic() < deadline, "the second wave made no progress"
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGSTOP)  # freeze it, look, then kill it
        stopped_at = batch_updates(folder, 2)
    finally:
        child.kill()
        child.wait()
    assert 0 < stopped_at < UPDATES, "the kill should land inside the second wave's first batch"
    outcome = runner.run(sequential_spec(), folder, SEQUENTIAL_SPEC, next_wave=scripted)
    assert not outcome.already_finished
    assert store_contents(folder) == store_contents(reference)
    assert_same_checkpoints(folder, reference)


def assert_same_checkpoints(folder: Path, reference: Path) -> None:
    """Two studies hold the same checkpoint files, array for array, bit for bit."""
    ours, theirs = checkpoints(folder), checkpoints(reference)
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert ours[name].keys() == theirs[name].keys()
        for leaf in ours[name]:
            np.testing.assert_array_equal(ours[name][leaf], theirs[name][leaf], err_msg=f"{name}/{leaf}")
