"""Live curves: a study and ``regspeed train`` write TensorBoard event files that
TensorBoard's own reader reads back as exactly the stored points; a resumed study writes no
step twice; ``--no-tensorboard`` writes none; links planted in a study folder are refused,
never followed."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import kill_mid_batch
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from test_study import TINY_SPEC, store_contents, tiny_spec
from typer.testing import CliRunner

from regspeed.cli import app
from regspeed.errors import ConfigError
from regspeed.study import live, runner
from regspeed.study import store as store_module

TINY_RUNS = ["l2@0.001/seed-0", "l2@0.001/seed-1", "l2@0.01/seed-0", "l2@0.01/seed-1", "none/seed-0", "none/seed-1"]
TINY_CHUNK_STEPS = 4 * 128  # chunk_updates x steps per update (8 envs x 16 steps)

Points = dict[str, list[tuple[int, float]]]  # tag -> [(step, value)]


def scalars(run_folder: Path) -> Points:
    """Every scalar of a run folder as TensorBoard reads it: in file order, every point kept
    and nothing purged (so a step written twice shows twice)."""
    accumulator = event_accumulator.EventAccumulator(
        str(run_folder), size_guidance={event_accumulator.SCALARS: 0}, purge_orphaned_data=False
    )
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def shown(folder: Path) -> dict[tuple[str, int], Points]:
    """(condition, seed) -> what TensorBoard shows of the run."""
    return {
        (run.parent.name, int(run.name.removeprefix("seed-"))): scalars(run)
        for run in sorted((folder / live.TENSORBOARD).glob("*/seed-*"))
    }


def stored(folder: Path) -> dict[tuple[str, int], Points]:
    """(condition, seed) -> the store's points, values cast to float32 as TensorBoard keeps them."""
    with store_module.Store.open(folder) as store:
        runs = {run.run_id: (run.condition, run.seed) for run in store.runs()}
        points: dict[tuple[str, int], Points] = {run: {} for run in runs.values()}
        for metric in store.metric_names():
            for run_id, (steps, values) in store.curve(metric).items():
                points[runs[run_id]][live.tag(metric)] = list(
                    zip(steps.tolist(), values.astype(np.float32).tolist(), strict=True)
                )
    return points


# ------------------------------------------------------------------------------ the format


def test_records_carry_tensorboards_own_checksums_and_events() -> None:
    rows = np.random.default_rng(0).integers(0, 256, (20, 37), dtype=np.uint8)
    assert live.masked_crc32c(rows).tolist() == [masked_crc32c(row.tobytes()) for row in rows]
    curves = {
        "score": (np.array([0, 0, 1]), np.array([128, 256, 128]), np.array([1.5, np.nan, 2.0])),
        "eval_score": (np.array([0, 1]), np.array([256, 0]), np.array([3.0, np.inf])),
        "reg_loss": (np.array([1]), np.array([2**40]), np.array([0.25])),
    }
    events = {position: _events(records) for position, records in live.encode(curves, 12.5).items()}
    assert events == {
        0: [(128, {"train/score": 1.5}), (256, {"eval/score": 3.0})],
        1: [(128, {"train/score": 2.0}), (2**40, {"train/reg_loss": 0.25})],
    }
    header = event_pb2.Event.FromString(live.header_record(7.0)[12:-4])
    assert header.file_version == "brain.Event:2" and header.wall_time == 7.0


def _events(records: bytes) -> list[tuple[int, dict[str, float]]]:
    """Records parsed with the tensorboard package's protos, checksums checked with its own."""
    found, at = [], 0
    while at < len(records):
        length = int.from_bytes(records[at : at + 8], "little")
        assert int.from_bytes(records[at + 8 : at + 12], "little") == masked_crc32c(records[at : at + 8])
        data = records[at + 12 : at + 12 + length]
        assert int.from_bytes(records[at + 12 + length : at + 16 + length], "little") == masked_crc32c(data)
        event = event_pb2.Event.FromString(data)
        found.append((event.step, {value.tag: value.simple_value for value in event.summary.value}))
        at += 16 + length
    return found


def test_tags_and_folder_names() -> None:
    assert [live.tag(name) for name in ("score", "eval_score", "eval_max_score")] == [
        "train/score",
        "eval/score",
        "eval/max_score",
    ]
    for kept in ("l2@0.001", "l1[policy]@1e-05", "weight_decay@1e+30", "none"):
        assert live.folder_name(kept) == kept
    unsafe = ["..", ".", "", "a/b", "a_b", "../../etc", "x\x1b[31m", "é" * 200]
    made = [live.folder_name(name) for name in unsafe]
    assert len(set(made)) == len(made)  # different names stay apart
    assert all(name.strip(".") and "/" not in name and len(name) < 100 for name in made)
    assert live.run_folder(3, "l2@0.01") == ("l2@0.01", "seed-3") and live.run_folder(3) == ("seed-3",)


def test_a_second_writer_appends_a_file_read_after_the_first(tmp_path: Path) -> None:
    curves = lambda steps: {"score": (np.zeros(len(steps), int), np.asarray(steps), np.ones(len(steps)))}  # noqa: E731
    for steps in ([0, 128], [256, 384]):  # two processes, one after the other
        with live.Board(tmp_path) as board:
            live.write({0: board.writer(("none", "seed-0"))}, curves(steps))
    files = sorted((tmp_path / "tensorboard" / "none" / "seed-0").iterdir())
    assert len(files) == 2 and all(live.EVENT_FILE.fullmatch(path.name) for path in files)
    assert scalars(files[0].parent) == {"train/score": [(0, 1.0), (128, 1.0), (256, 1.0), (384, 1.0)]}


def test_forget_removes_only_our_event_files(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    folder = tmp_path / "study"
    folder.mkdir()
    with live.Board(folder) as board:
        board.writer(("none", "seed-0"))
    run = folder / "tensorboard" / "none" / "seed-0"
    (run / "notes.txt").write_text("the user's")
    (run / "events.out.tfevents.1700000000.000009.regspeed").symlink_to(outside)
    live.Board(folder).forget(("none", "seed-0"))
    assert sorted(path.name for path in run.iterdir()) == ["notes.txt"]
    assert outside.read_text() == "precious"
    live.Board(folder).forget(("l2@0.01", "seed-0"))  # nothing there: nothing made
    assert not (folder / "tensorboard" / "l2@0.01").exists()


@pytest.mark.parametrize("planted", ["tensorboard", "tensorboard/none", "tensorboard/none/seed-0"])
def test_a_link_planted_in_a_study_is_refused_before_training(tmp_path: Path, planted: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "study"
    runner._open_or_create(tiny_spec(), folder, TINY_SPEC).close()  # a study of ours, not started
    (folder / planted).parent.mkdir(parents=True, exist_ok=True)
    (folder / planted).symlink_to(outside, target_is_directory=True)
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text(TINY_SPEC)
    result = CliRunner().invoke(app, ["study", str(spec_file), "--out", str(folder)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1] == (
        f"error: tensorboard: {folder / planted} is a symbolic link; regspeed does not write through links: "
        "remove it (or run without TensorBoard: --no-tensorboard)"
    )
    assert list(outside.iterdir()) == []
    assert {batch[3] for batch in store_contents(folder)["batches"]} == {0}  # nothing trained
    with pytest.raises(ConfigError, match="is a symbolic link"), live.Board(folder) as board:
        board.writer(("none", "seed-0"))
    assert list(outside.iterdir()) == []


# ------------------------------------------------------------------------------- studies


@pytest.mark.slow  # the tiny study fixture
def test_a_study_shows_every_stored_point_once(tiny_study: Path) -> None:
    board = tiny_study / live.TENSORBOARD
    assert sorted(path.relative_to(board).as_posix() for path in board.glob("*/*")) == TINY_RUNS
    points = shown(tiny_study)
    assert points == stored(tiny_study)
    tags = points["none", 0]
    assert {"train/score", "train/policy_loss", "eval/score", "eval/max_score"} <= tags.keys()
    assert [step for step, _ in tags["eval/score"]] == [8 * 128 * k for k in range(16)]  # every 8 updates


@pytest.mark.slow  # the tiny study fixture, then the same study without TensorBoard
def test_no_tensorboard_writes_none_and_changes_no_result(tiny_study: Path, tmp_path: Path) -> None:
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text(TINY_SPEC)
    folder = tmp_path / "study"
    result = CliRunner().invoke(app, ["study", str(spec_file), "--out", str(folder), "--no-tensorboard"])
    assert result.exit_code == 0, result.output
    assert "live curves" not in result.output
    assert not (folder / live.TENSORBOARD).exists()
    assert store_contents(folder) == store_contents(tiny_study)


@pytest.mark.slow  # a study killed mid-batch, then resumed
def test_a_resumed_study_writes_no_step_twice(tmp_path: Path) -> None:
    spec_path = tmp_path / "tiny.toml"
    spec_path.write_text(TINY_SPEC)
    folder = tmp_path / "killed"
    stopped_at = kill_mid_batch(spec_path, folder)
    assert 0 < stopped_at < 120, "the kill should land inside the first batch"
    runner.run(tiny_spec(), folder, TINY_SPEC)
    assert len(list((folder / "tensorboard" / "none" / "seed-0").iterdir())) == 2  # one file per process
    points, truth = shown(folder), stored(folder)
    assert points.keys() == truth.keys()
    lost = set()
    for run, tags in truth.items():
        for tag, stored_points in tags.items():
            seen = points[run].get(tag, [])
            steps = [step for step, _ in seen]
            assert steps == sorted(set(steps)), f"{run} {tag}: a step written twice or out of order"
            assert set(seen) <= set(stored_points), f"{run} {tag}: a point the store does not hold"
            lost |= {(run[0], step) for step, _ in set(stored_points) - set(seen)}
    # the kill may land between a chunk's commit and its event write: that chunk's points only
    assert {condition for condition, _ in lost} <= {"none"}
    steps = [step for _, step in lost]
    assert not steps or max(steps) - min(steps) <= TINY_CHUNK_STEPS, sorted(steps)
    before = sorted(path.relative_to(folder) for path in (folder / "tensorboard").rglob("*"))
    assert runner.run(tiny_spec(), folder, TINY_SPEC).already_finished
    assert sorted(path.relative_to(folder) for path in (folder / "tensorboard").rglob("*")) == before


# --------------------------------------------------------------------------------- train

TRAIN = ["train", "--rows", "5", "--cols", "5", "--observation", "features", "--hidden", "16", "--num-envs", "8"]
TRAIN += ["--rollout-steps", "16", "--steps", "8192", "--seeds", "2", "--eval-every", "16"]


@pytest.mark.slow  # trains three times (one compilation)
def test_train_writes_its_curves_as_events_and_a_rerun_replaces_them(tmp_path: Path) -> None:
    out = tmp_path / "run"
    for _ in range(2):  # a second run into the same --out starts afresh: no step twice
        result = CliRunner().invoke(app, [*TRAIN, "--out", str(out)])
        assert result.exit_code == 0, result.output
    board = out / live.TENSORBOARD
    assert sorted(path.name for path in board.iterdir()) == ["seed-0", "seed-1"]
    assert [len(list((board / seed).iterdir())) for seed in ("seed-0", "seed-1")] == [1, 1]
    with open(out / "curve.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    for seed in (0, 1):
        points = scalars(board / f"seed-{seed}")
        assert [step for step, _ in points["eval/score"]] == [0, 2048, 4096, 6144, 8192]
        for name in ("policy_loss", "score"):
            expected = [(int(r["env_steps"]), float(r[name])) for r in rows if int(r["seed"]) == seed and r[name]]
            got = points.get(f"train/{name}", [])
            assert [step for step, _ in got] == [step for step, _ in expected]
            assert all(
                math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6) for (_, a), (_, b) in zip(got, expected, strict=True)
            )
    assert len(points["train/policy_loss"]) == 64
    quiet = tmp_path / "quiet"
    assert CliRunner().invoke(app, [*TRAIN, "--out", str(quiet), "--no-tensorboard"]).exit_code == 0
    assert (quiet / "curve.csv").exists() and not (quiet / live.TENSORBOARD).exists()


def test_train_refuses_a_planted_link_before_compiling(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "run"
    (out / "tensorboard").mkdir(parents=True)
    os.symlink(outside, out / "tensorboard" / "seed-0")
    refused = CliRunner().invoke(app, [*TRAIN, "--out", str(out)])
    assert refused.exit_code == 2 and "seed-0 is a symbolic link" in refused.output, refused.output
    assert list(outside.iterdir()) == [] and not (out / "checkpoint.npz").exists()
