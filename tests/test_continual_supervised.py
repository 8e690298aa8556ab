"""Continual supervised tasks: ``[config.schedule]`` for ``digits`` / ``teacher`` (permuted
inputs, new label mappings), the supervised use of ``envs/schedule.py``."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest
from conftest import leaves_equal
from typer.testing import CliRunner

from regspeed.cli import app
from regspeed.envs import schedule
from regspeed.errors import ConfigProblemsError
from regspeed.learn import checkpoint, registry, supervised
from regspeed.learn import driver as training
from regspeed.learn import regularizers as regs
from regspeed.learn.learner import Learner, Request, Setup

SMALL = {"digits": {"hidden": [16], "batch_size": 32, "train_fraction": 0.5},
         "teacher": {"hidden": [16], "inputs": 6, "train_samples": 64, "test_samples": 32}}  # fmt: skip
CHANGING = {"digits": {"phase_steps": 3, "changes": ["observations", "labels"], "seed": 1},
            "teacher": {"phase_steps": 3, "changes": ["observations"], "seed": 1}}  # fmt: skip
PINNED = {  # sha256 prefixes of 6 stationary updates recorded before schedules existed (commit ee494e8)
    ("digits", "none"): "6a0cc38637df78a3",
    ("digits", "l2_init"): "26b034005145bf45",
    ("teacher", "none"): "79c048b859b150f7",
    ("teacher", "l2_init"): "c025c542cb15ffa4",
}


def _setup(task: str, kind: str = "none", budget: int = 6, **table: Any) -> tuple[Learner, Setup]:
    learner = registry.get(task)
    return learner, learner.build(SMALL[task] | table, Request(budget=budget, regularizer=regs.Regularizer(kind=kind)))


def _digest(task: str, metrics: dict, evaluated: dict, params: Any) -> str:
    found = hashlib.sha256()
    for name in ("train_loss", "test_loss", "train_accuracy" if task == "digits" else "train_r2"):
        found.update(np.asarray(metrics[name]).tobytes())
    found.update(np.asarray(evaluated["eval_test_loss"]).tobytes())
    for leaf in jax.tree.leaves(params):
        found.update(np.asarray(leaf).tobytes())
    return found.hexdigest()[:16]


def test_each_later_phase_permutes_the_inputs_and_deranges_the_labels() -> None:
    _, setup = _setup("digits", budget=12, schedule=CHANGING["digits"])
    world = supervised.world(setup.config)
    assert world is not None and world.actions.shape == (4, 10) and world.observations.shape == (4, 64)
    assert (world.actions[0] == np.arange(10)).all() and (world.observations[0] == np.arange(64)).all()
    for phase in range(1, 4):
        assert not np.any(world.actions[phase] == np.arange(10))  # every class gets a new label
        assert sorted(world.observations[phase]) == list(range(64))
        assert not (world.observations[phase] == np.arange(64)).all()
    same = schedule.tables(setup.config.schedule, 10, 64, 4)  # the Snake worlds' tables, the same draws
    assert (same.actions == world.actions).all() and (same.observations == world.observations).all()
    only_inputs = _setup("digits", budget=12, schedule=CHANGING["digits"] | {"changes": ["observations"]})[1]
    inputs = supervised.world(only_inputs.config)
    assert inputs is not None and (inputs.actions == np.arange(10)).all()
    assert supervised.world(_setup("digits")[1].config) is None


def test_an_update_sees_its_phases_inputs_and_labels() -> None:
    """The network of phase k applied to the dataset computes what it computes on the
    phase's permuted inputs, and the labels are the phase's."""
    learner, setup = _setup("digits", budget=12, schedule=CHANGING["digits"])
    world = supervised.world(setup.config)
    assert world is not None
    params = jax.tree.map(lambda leaf: leaf[0], learner.start(setup, [3], [0.0]).params)
    model = supervised.Model(setup.config)
    x, y = (np.asarray(a) for a in supervised.dataset(setup.config)[:2])
    for update, phase in ((0, 0), (2, 0), (3, 1), (8, 2), (11, 3), (40, 3)):
        seen = supervised.view(setup.config, update)
        shown = model.apply({"params": seen.params(params)}, x)
        np.testing.assert_allclose(shown, model.apply({"params": params}, x[:, world.observations[phase]]), atol=1e-5)
        np.testing.assert_array_equal(seen.labels(y), world.actions[phase][y])


@pytest.mark.parametrize(
    ("task", "table", "problem"),
    [
        ("digits", {"phase_steps": 2, "changes": ["actions"]}, ("schedule.changes", "digits cannot change its act")),
        ("teacher", {"phase_steps": 2, "changes": ["labels"]}, ("schedule.changes", "teacher cannot change its lab")),
        ("modadd", {"phase_steps": 2, "changes": ["observations"]}, ("schedule.changes", "modadd cannot change")),
        ("digits", {"phase_steps": 6, "changes": ["labels"]}, ("schedule.phase_steps", "must be shorter than the")),
        ("digits", {"phase_steps": 2}, ("schedule.changes", "give what changes")),
        ("digits", {"phase_steps": 2, "changes": ["labels"], "when": 1}, ("schedule.when", "unknown key")),
    ],
)
def test_a_bad_schedule_names_its_field(task: str, table: dict, problem: tuple[str, str]) -> None:
    learner = registry.get(task)
    with pytest.raises(ConfigProblemsError) as caught:
        learner.build(SMALL.get(task, {}) | {"schedule": table}, Request(budget=6))
    path, message = caught.value.problems[0]
    assert path == problem[0] and message.startswith(problem[1]), caught.value.problems


def test_more_phases_than_the_program_holds_is_refused() -> None:
    table = SMALL.get("digits", {}) | {"schedule": {"phase_steps": 1, "changes": ["labels"]}}
    with pytest.raises(ConfigProblemsError) as caught:
        registry.get("digits").build(table, Request(budget=10_001))
    assert caught.value.problems == [("schedule.phase_steps", caught.value.problems[0][1])]
    assert caught.value.problems[0][1].startswith("gives 10,001 phases over the budget, more than 10,000")


def test_a_snake_refuses_a_labels_change() -> None:
    with pytest.raises(ConfigProblemsError) as caught:
        registry.get("snake-ppo").build({"schedule": {"phase_steps": 8192, "changes": ["labels"]}},
                                        Request(budget=10**7))  # fmt: skip
    assert caught.value.problems[0][0] == "schedule.changes"


def test_a_bad_schedule_in_a_spec_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "continual.toml"
    path.write_text('name = "c"\ntask = "digits"\nseeds = 2\nbudget = 20\n[config]\nhidden = [8]\n'
                    '[config.schedule]\nphase_steps = 5\nchanges = ["actions"]\n')  # fmt: skip
    result = CliRunner().invoke(app, ["study", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "config.schedule.changes: digits cannot change its actions" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("task", "kind"), list(PINNED))
def test_a_stationary_task_computes_the_numbers_recorded_before_schedules(task: str, kind: str) -> None:
    learner, setup = _setup(task, kind)
    carry = learner.start(setup, [3, 4], [1e-3, 1e-2])
    carry, metrics = learner.trainer.advance_batch(setup.config, carry, 6)
    evaluated = learner.trainer.evaluate_batch(setup.config, carry)
    assert _digest(task, metrics, evaluated, carry.params) == PINNED[task, kind]
    assert "schedule" not in learner.tables(setup)  # a stationary task's tables are as before


@pytest.mark.parametrize("task", ["digits", "teacher"])
def test_phase_0_is_the_stationary_task_bit_for_bit_and_phase_1_is_not(task: str) -> None:
    learner, still = _setup(task, "l2_init", budget=9)
    _, changing = _setup(task, "l2_init", budget=9, schedule=CHANGING[task])
    assert learner.tables(changing)["schedule"] == CHANGING[task]
    runs = []
    for setup in (still, changing):
        carry = learner.start(setup, [3, 4], [1e-3, 1e-2])
        runs.append(learner.trainer.advance_batch(setup.config, carry, 4)[1])
    for name in ("train_loss", "test_loss", "reg_loss"):
        np.testing.assert_array_equal(runs[0][name][:, :3], runs[1][name][:, :3])
        assert not np.array_equal(runs[0][name][:, 3], runs[1][name][:, 3]), name


LINREG = {"inputs": 6, "train_samples": 128, "test_samples": 32, "condition_number": 10.0, "hidden": [],
          "optimizer": "sgd"}  # fmt: skip


def test_optimum_progress_is_towards_the_phases_own_optimum() -> None:
    """In phase 1 the stored weights that the phase's model applies as the ridge optimum
    of the permuted inputs are at progress 1; phase 0's optimum is not. Phase 0's progress
    is the stationary task's bit for bit."""
    learner, l2 = registry.get("linreg"), regs.Regularizer("l2")
    table = LINREG | {"schedule": {"phase_steps": 3, "changes": ["observations"], "seed": 1}}
    config = learner.build(table, Request(budget=9, regularizer=l2)).config
    world = supervised.world(config)
    assert world is not None and not (world.observations[1] == np.arange(6)).all()
    x, y = (np.asarray(a, np.float64) for a in supervised.dataset(config)[:2])

    def ridge(inputs: np.ndarray) -> np.ndarray:  # [w; b] of the penalised least squares, solved here
        features = np.concatenate([inputs, np.ones((len(y), 1))], axis=1)
        gram = features.T @ features / len(y) + np.diag([0.5] * inputs.shape[1] + [0.0])
        return np.linalg.solve(gram, features.T @ y / len(y))

    def progress(solution: np.ndarray, update: int) -> float:  # after one step with learning rate 0
        carry = supervised.init(config, jax.random.key(0), supervised.hparams(0.0, 0.5))
        kernel = jax.numpy.asarray(solution[:-1, None], jax.numpy.float32)
        params = {"out": {"kernel": kernel, "bias": jax.numpy.asarray(solution[-1:], jax.numpy.float32)}}
        carry = carry.replace(params=params, update=jax.numpy.asarray(update, jax.numpy.int32))
        return float(supervised.update(config, carry)[1]["optimum_progress"])

    stationary, permuted = ridge(x), ridge(x[:, world.observations[1]])
    assert progress(stationary, 0) == pytest.approx(1.0, abs=1e-4)
    assert progress(permuted, 3) == pytest.approx(1.0, abs=1e-4)
    assert progress(stationary, 3) < 0.9 and progress(permuted, 0) < 0.9
    runs = []
    for setup in (learner.build(found, Request(budget=9, regularizer=l2)) for found in (LINREG, table)):
        runs.append(learner.trainer.advance_batch(setup.config, learner.start(setup, [3, 4], [1e-2, 0.5]), 4)[1])
    np.testing.assert_array_equal(runs[0]["optimum_progress"][:, :3], runs[1]["optimum_progress"][:, :3])
    assert not np.array_equal(runs[0]["optimum_progress"][:, 3], runs[1]["optimum_progress"][:, 3])


def test_a_continual_task_resumes_mid_phase_bit_identical(tmp_path: Path) -> None:
    """Killed mid-phase and resumed from its checkpoint, a run ends as if uninterrupted."""
    learner, setup = _setup("digits", "shrink_perturb", budget=12, schedule=CHANGING["digits"])
    start = lambda: learner.start(setup, [5, 6], [1e-2, 0.0])  # noqa: E731
    straight, straight_history = training.train(learner.trainer, setup.config, start(), 12, 2, eval_every=2)
    first, history = training.train(learner.trainer, setup.config, start(), 4, 2, eval_every=2)  # phase 1's middle
    restored = checkpoint.load(checkpoint.save(tmp_path / "carry.npz", first), learner.start(setup, [0, 0], [0.0, 0.0]))
    resumed, history = training.train(learner.trainer, setup.config, restored, 12, 2, eval_every=2, history=history)
    assert leaves_equal(resumed, straight) and jax.tree.structure(resumed) == jax.tree.structure(straight)
    for metric, values in straight_history.updates.items():
        np.testing.assert_array_equal(history.updates[metric], values)


def test_shrink_perturb_at_phase_changes_acts_after_each_phases_last_update() -> None:
    learner = registry.get("digits")
    at_change = regs.Regularizer("shrink_perturb", period=0, perturb=0.0)  # shrink only
    setup = learner.build(SMALL["digits"] | {"schedule": CHANGING["digits"]}, Request(budget=9, regularizer=at_change))
    carry = learner.start(setup, [3, 3], [0.5, 0.0])
    losses = np.asarray(learner.trainer.advance_batch(setup.config, carry, 7)[1]["train_loss"])
    changed = [not np.array_equal(*column) for column in losses.T]  # shrunk vs not, update by update
    assert changed[:2] == [False, False] and changed[2], changed  # the first shrink ends phase 0 (update 2)
    with pytest.raises(ConfigProblemsError) as caught:
        learner.build(SMALL["digits"], Request(budget=9, regularizer=at_change))
    assert caught.value.problems[0][0] == "regularizer.period"


CONTINUAL_SPEC = """name = "continual"
task = "digits"
seeds = 2
budget = 60
[config]
hidden = [8]
batch_size = 32
learning_rate = 1e-2
[config.schedule]
phase_steps = 20
changes = ["observations", "labels"]
[[regularizers]]
kind = "l2_init"
strengths = [1e-3]
[evaluation]
every_updates = 0
[thresholds]
train_accuracy = [0.3]
"""


def test_a_continual_supervised_study_reports_relearning(tmp_path: Path) -> None:
    from regspeed.analysis import compare
    from regspeed.study import results
    from regspeed.study import store as store_module

    path = tmp_path / "continual.toml"
    path.write_text(CONTINUAL_SPEC)
    result = CliRunner().invoke(app, ["study", str(path), "--out", str(tmp_path / "out"), "--no-tensorboard"])
    assert result.exit_code == 0, result.output
    with store_module.Store.open(tmp_path / "out") as store:
        data = results.load(store)
    assert data.phase_steps == 20 and data.phase_changes == ("observations", "labels")
    found = compare.analyze(data).phases
    assert found is not None and found.count == 3 and found.metric == "train_accuracy"
    assert not found.per_phase and (found.thresholds == 0.3).all()  # a threshold the spec sets, in every phase
    assert "Relearning after the world changes" in (tmp_path / "out" / "summary.md").read_text()


def test_a_run_batched_with_runs_at_other_rates_ends_as_it_would_alone() -> None:
    """Batching across cells: a run trained beside runs at other learning rates (and the same
    seed) ends where it ends alone, to float rounding (a vmapped batch's products may sum in
    another order), each at its own rate."""
    learner = registry.get("teacher")
    setup = learner.build(SMALL["teacher"], Request(budget=12))
    together = learner.start(setup, [3, 3, 4], [0.0, 0.0, 0.0], [1e-3, 3e-3, 3e-3])
    alone = learner.start(setup, [3], [0.0], [3e-3])
    together, metrics = learner.trainer.advance_batch(setup.config, together, 12)
    alone, _ = learner.trainer.advance_batch(setup.config, alone, 12)
    np.testing.assert_array_equal(metrics["learning_rate"][:, 0], np.float32([1e-3, 3e-3, 3e-3]))
    for mixed, single in zip(jax.tree.leaves(together.params), jax.tree.leaves(alone.params), strict=True):
        np.testing.assert_allclose(np.asarray(mixed)[1], np.asarray(single)[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(jax.tree.leaves(together.params)[0])[0],
                           np.asarray(jax.tree.leaves(together.params)[0])[1])  # fmt: skip
