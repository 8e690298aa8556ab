"""Tuned comparisons: each condition at its best setting, chosen on tuning seeds and compared
on evaluation seeds (``[tuning]``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import kill_mid_batch
from hypothesis import given
from hypothesis import strategies as st
from test_study import TINY_SPEC, store_contents
from typer.testing import CliRunner

from regspeed.analysis import metrics, tuning
from regspeed.cli import app
from regspeed.errors import ConfigError
from regspeed.report import report
from regspeed.study import results, runner
from regspeed.study import spec as spec_module
from regspeed.study import store as store_module

TUNED = TINY_SPEC.replace("strengths = [1e-3, 1e-2]", "strengths = [1e-2]") + """
[tuning]
seeds = 2
first_seed = 100
candidates = { learning_rate = [3e-4, 3e-3] }
"""
TUNED_CELLS = TUNED.replace("budget = 15_360", "budget = { per_cell = 128 }") + "\n[factors]\nboard = [5, 6]\n"


def test_tuning_runs_are_a_study_of_the_factors_then_the_knobs() -> None:
    """Tuning cell e * K + k is evaluation cell e at candidate k, on the tuning seeds; the
    evaluation cells carry no [tuning] and the knob resolves to the task's own table."""
    spec = spec_module.parse(TUNED_CELLS)
    study = spec_module.tuning_study(spec)
    cells = spec_module.cells(study)
    assert [cell.label for cell in cells] == [
        "board=5, learning_rate=0.0003", "board=5, learning_rate=0.003",
        "board=6, learning_rate=0.0003", "board=6, learning_rate=0.003",
    ]  # fmt: skip
    assert cells[3].spec.config["ppo"]["learning_rate"] == 0.003 and cells[3].spec.config["env"]["rows"] == 6
    assert (study.seed_list(), study.tuning) == ([100, 101], None)
    assert [cell.spec.tuning for cell in spec_module.cells(spec)] == [None, None]
    assert spec_module.candidates(spec) == [{"learning_rate": 0.0003}, {"learning_rate": 0.003}]
    tuned = spec_module.with_values(spec_module.cells(spec)[0].spec, {"learning_rate": 0.003})
    assert tuned.config["ppo"]["learning_rate"] == 0.003
    ppo_table = "[config.ppo]\nnum_envs = 8\nrollout_steps = 16\nepochs = 1\nminibatches = 2\n"
    assert ppo_table in TUNED
    dqn = spec_module.parse(
        TUNED.replace('task = "snake-ppo"', 'task = "snake-dqn"').replace(ppo_table, "[config.dqn]\nnum_envs = 8\n")
    )
    assert spec_module.cells(spec_module.tuning_study(dqn))[1].spec.config["dqn"]["learning_rate"] == 0.003
    quick = spec_module.quick(spec)
    assert quick.tuning is not None and quick.tuning.seeds == 2 and quick.tuning.candidates == spec.tuning.candidates


@pytest.mark.parametrize(
    ("change", "problems"),
    [
        (("learning_rate = [3e-4, 3e-3]", "learning_rate = [3e-4]"), [
            ("tuning.candidates.learning_rate", "gives 1 candidate; tuning chooses among two or more"),
        ]),
        (("first_seed = 100", "first_seed = 1"), [
            ("tuning.first_seed", "the tuning seeds 1 to 2 overlap the evaluation seeds 0 to 1"),
        ]),
        (("learning_rate = [3e-4, 3e-3]", "learning_rate = [3e-4, -1.0]"), [
            ("tuning.candidates.learning_rate[1]", "must be a number > 0 (got -1.0)"),
        ]),
        (("learning_rate = [3e-4, 3e-3]", "board = [5, 6]"), [
            ("tuning.candidates.board", "is a factor of the study, not a setting to tune"),
        ]),
        (("learning_rate = [3e-4, 3e-3]", "ppo = { colour = [1, 2] }"), [
            ("tuning.candidates.ppo.colour", "names no field of the task's configuration"),
        ]),
        (("learning_rate = [3e-4, 3e-3]", "learning_rate = 3e-4"), [
            ("tuning.candidates.learning_rate", "must be a list of candidate values"),
        ]),
        (("candidates = { learning_rate = [3e-4, 3e-3] }", "candidates = {}"), [
            ("tuning.candidates", "give at least one setting and its candidates"),
        ]),
        (("first_seed = 100", "first_seed = 100\ncriterion = \"best\""), [("tuning.criterion", "")]),
        (("chunk_updates = 4", "chunk_updates = 4\nsequential = true\nmax_seeds = 200"), [
            ("tuning", "a tuned study runs a fixed number of evaluation seeds"),
            ("tuning.first_seed", "the tuning seeds 100 to 101 overlap"),
        ]),
    ],
)
def test_bad_tuning_is_one_line_per_problem_at_its_path(change: tuple[str, str], problems: list) -> None:
    """Each problem of [tuning] at its TOML path: a value at its index among the candidates."""
    text = TUNED.replace(*change)
    assert text != TUNED
    with pytest.raises(spec_module.SpecError) as caught:
        spec_module.parse(text)
    found = caught.value.problems
    assert len(found) == len(problems), found
    for (path, message), (want_path, want_start) in zip(found, problems, strict=True):
        assert path == want_path and message.startswith(want_start), found


def test_a_bad_tuning_table_exits_2_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "tuned.toml"
    path.write_text(TUNED.replace("learning_rate = [3e-4, 3e-3]", "learning_rate = [3e-4, 3e-4]"))
    result = CliRunner().invoke(app, ["study", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "tuning.candidates.learning_rate: lists 0.0003 twice" in result.output
    assert not (tmp_path / "out").exists()


def test_a_tuned_study_without_a_chooser_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"choose=tuning\.choose"):
        runner.run(spec_module.parse(TUNED), tmp_path / "out", TUNED)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("scores", "kept"),
    [
        ([[1.0, 2.0], [2.0, 2.0]], 1),  # the higher mean
        ([[1.0, 1.0], [1.0, 1.0]], 0),  # a tie: the first
        ([[0.5, 0.5], [9.0, None]], 0),  # a failed run loses to none failed, whatever its mean
        ([[None, None], [1.0, None]], 1),  # fewer failures first
        ([[None, None], [None, None]], 0),
    ],
)
def test_the_kept_candidate_has_fewest_failures_then_the_best_mean(scores: list, kept: int) -> None:
    assert tuning.best(scores) == kept


@given(st.lists(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=4), min_size=2, max_size=6))
def test_without_failures_the_kept_candidate_has_the_largest_mean(scores: list[list[float]]) -> None:
    kept = tuning.best(scores)
    means = [float(np.mean(s)) for s in scores]
    assert means[kept] == max(means) and all(m < means[kept] for m in means[:kept])


@pytest.mark.slow
def test_cells_that_differ_only_in_the_learning_rate_share_batches() -> None:
    """The tuning candidates of a board share one compiled program (the rate is traced), so
    their runs are batched together; boards are not (their programs differ). Runs keep their
    cells, in cell order."""
    study = spec_module.tuning_study(spec_module.parse(TUNED_CELLS))
    parts = [runner.Part(c.index, c.spec, spec_module.conditions(c.spec)) for c in spec_module.cells(study)]
    the_plan = runner.plan_parts(parts, study.seed_list())
    cells_of = [sorted({run.cell for run in batch.runs}) for batch in the_plan.batches]
    assert cells_of == [[0, 1], [0, 1], [2, 3], [2, 3]]  # (board 5, board 6) x (none, l2): each with both rates
    assert sum(len(batch.runs) for batch in the_plan.batches) == 4 * 2 * 2
    first = the_plan.batches[0]
    assert [(run.cell, run.condition, run.seed) for run in first.runs] == [
        (0, "none", 100), (0, "none", 101), (1, "none", 100), (1, "none", 101)
    ]  # fmt: skip
    untuned = TUNED_CELLS.replace("board = [5, 6]", "learning_rate = [1e-3, 3e-3]").split("[tuning]")[0]
    rates = spec_module.parse(untuned + "\n[factors]\nlearning_rate = [1e-3, 3e-3]\n")  # a plain factor
    parts = [runner.Part(c.index, c.spec, spec_module.conditions(c.spec)) for c in spec_module.cells(rates)]
    assert [sorted({r.cell for r in b.runs}) for b in runner.plan_parts(parts, [0]).batches] == [[0, 1], [0, 1]]


@pytest.mark.slow
def test_a_tuned_study_keeps_each_conditions_best_and_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    """Two cells, two conditions, two learning rates on two tuning seeds: the tuning runs are a
    study of their own in FOLDER/tuning; each condition of each cell is evaluated at the rate
    with the largest mean area under its score curve (recomputed here from the tuning store),
    on the evaluation seeds; the report says so. Killed during its tuning runs and resumed,
    both stores equal the uninterrupted study's."""
    spec = spec_module.parse(TUNED_CELLS)
    reference = tmp_path / "reference"
    outcome = runner.run(spec, reference, TUNED_CELLS, choose=tuning.choose, tensorboard=False)
    assert outcome.runs_total == 2 * 2 * 2 and outcome.runs_failed == 0  # evaluation runs: cells x conditions x seeds
    with store_module.Store.open(reference / runner.TUNING) as tuned, store_module.Store.open(reference) as store:
        assert len(tuned.runs()) == 2 * 2 * 2 * 2  # cells x candidates x conditions x tuning seeds
        assert {run.seed for run in tuned.runs()} == {100, 101} and {run.seed for run in store.runs()} == {0, 1}
        for batch in tuned.batches():  # each batch trains both candidates of a board, each run at its own rate
            assert len({run.cell for run in tuned.runs() if run.batch == batch.batch_id}) == 2
        env, states = results.episode(tuned, "none", 101, cell=1, max_steps=20)  # its batch: cells 0 and 1
        assert env.rows == 5 and 1 <= len(states) <= 21  # the states of one greedy episode
        for cell in range(4):
            for curves in results.curves(tuned, "learning_rate", cell=cell):
                assert np.allclose(curves.values[:, 0], (3e-4, 3e-3)[cell % 2])
        choice = results.tuning(store)
        rates = results.curves(store, "learning_rate", cell=1)
        expected = {}
        for cell in (0, 1):
            for condition in ("none", "l2@0.01"):
                means = []
                for candidate in (0, 1):
                    data = results.load(tuned, ("score",), cell=2 * cell + candidate)
                    curve = data.curves_of("score")[condition]
                    means.append(float(np.mean(metrics.area_under_curve(curve.steps, curve.values, data.budget_steps))))
                expected[cell, condition] = int(np.argmax(means))
    assert choice is not None and choice.metric == "score" and choice.seeds == [100, 101]
    assert {(c, t.condition): t.chosen for c, cell in enumerate(choice.cells) for t in cell.conditions} == expected
    for curves in rates:  # the evaluation runs start at the kept rate (then anneal)
        kept = choice.values(1, curves.condition)["learning_rate"]
        assert np.allclose(curves.values[:, 0], kept) and curves.values.shape[0] == 2
    written = report.write(reference)
    assert "Tuning" in written.html_path.read_text() and "kept learning_rate=" in written.markdown_path.read_text()

    spec_path = tmp_path / "tuned.toml"
    spec_path.write_text(TUNED_CELLS)
    killed = tmp_path / "killed"
    assert kill_mid_batch(spec_path, killed, watched=killed / runner.TUNING) > 0
    with store_module.Store.open(killed) as store:
        assert results.tuning_pending(store) and store.runs() == []
    pending = CliRunner().invoke(app, ["report", str(killed)])
    assert pending.exit_code == 2 and "is still tuning" in pending.output
    status = CliRunner().invoke(app, ["status", str(killed)])
    assert status.exit_code == 0 and "tuning first" in status.output
    runner.run(spec, killed, TUNED_CELLS, choose=tuning.choose, tensorboard=False)
    for sub in ("", runner.TUNING):
        assert store_contents(killed / sub) == store_contents(reference / sub)
    with store_module.Store.open(killed) as store, store_module.Store.open(reference) as other:
        assert json.loads(store.meta()["tuning"]) == json.loads(other.meta()["tuning"])
    assert not math.isnan(choice.cells[0].conditions[0].scores[0][0])
