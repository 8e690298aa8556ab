"""The learner contract, checked against every registered learner: what ``advance`` and
``evaluate`` report, determinism, bit-identical resume from a checkpoint, and that a run
whose numbers blow up is stopped alone. A new learner needs only its tiny configuration
in ``tests/tiny.py`` to be covered."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest
import tiny
from conftest import leaves_equal

from regspeed.learn import checkpoint, registry, snake_agents
from regspeed.learn import driver as training

LEARNERS = registry.names()
CHUNK = 2  # every test advances in chunks of 2 updates: one compiled program per learner, shared


def test_every_learner_has_a_tiny_configuration() -> None:
    assert sorted(tiny.TABLES) == sorted(LEARNERS)


@pytest.mark.parametrize("name", LEARNERS)
def test_learner_declarations_are_consistent(name: str) -> None:
    learner = registry.get(name)
    setup = tiny.setup(name)
    assert learner.tables(learner.build(learner.tables(setup), _request(name))) == learner.tables(setup)
    assert all(learner.metric(metric).higher_is_better for metric in learner.speed_metrics)
    assert learner.bytes_per_run(setup.config) > 0
    assert learner.steps_per_update(setup) * learner.total_updates(setup) <= tiny.TABLES[name][1]


def _request(name: str) -> object:
    from regspeed.learn import regularizers as regs
    from regspeed.learn.learner import Request

    return Request(tiny.TABLES[name][1], regs.Regularizer("l2"), **tiny.EVALUATION)


@pytest.mark.parametrize("name", LEARNERS)
def test_advance_and_evaluate_report_every_declared_metric_per_run(name: str) -> None:
    learner, setup, carry = tiny.start(name, [0, 1], [0.0, 1e-2])
    carry, metrics = learner.trainer.advance_batch(setup.config, carry, CHUNK)
    evaluation = learner.trainer.evaluate_batch(setup.config, carry)
    only_with_levels = set(snake_agents.LEVEL_METRICS) if learner.play else set()
    assert set(metrics) | set(evaluation) == {metric.name for metric in learner.metrics} - only_with_levels
    assert all(np.shape(values) == (2, CHUNK) for values in metrics.values())
    assert all(np.shape(values) == (2,) for values in evaluation.values())
    assert int(carry.update[0]) == CHUNK
    reg_loss = np.asarray(metrics["reg_loss"])
    assert (reg_loss[0] == 0).all() and (reg_loss[1] > 0).all()  # the strength is per run


@pytest.mark.parametrize("name", ["snake-ppo", "snake-dqn"])
@pytest.mark.parametrize("levels", [3, 0])
def test_a_world_with_levels_reports_the_level_metrics(name: str, levels: int) -> None:
    """Training and held-out levels are evaluated apart; eval_* are the training levels (with
    ``levels = 0``, fixed random ones)."""
    learner = registry.get(name)
    setup = tiny.setup(name, env=tiny.LEVELS | {"levels": levels})
    assert learner.speed_metrics_of(setup) == snake_agents.SPEED_METRICS + snake_agents.LEVEL_SPEED_METRICS
    carry = learner.start(setup, [0, 1], np.zeros(2, np.float32))
    carry, metrics = learner.trainer.advance_batch(setup.config, carry, CHUNK)
    evaluation = {k: np.asarray(v) for k, v in learner.trainer.evaluate_batch(setup.config, carry).items()}
    assert set(metrics) | set(evaluation) == {metric.name for metric in learner.metrics}
    np.testing.assert_array_equal(evaluation["train_levels_score"], evaluation["eval_score"])
    gap = evaluation["train_levels_score"] - evaluation["test_levels_score"]
    np.testing.assert_allclose(evaluation["levels_gap"], gap)


@pytest.mark.parametrize("name", LEARNERS)
def test_same_seed_same_numbers(name: str) -> None:
    learner, setup, first = tiny.start(name, [3, 4], [1e-3, 1e-3])
    _, _, second = tiny.start(name, [3, 4], [1e-3, 1e-3])
    first, first_metrics = learner.trainer.advance_batch(setup.config, first, CHUNK)
    second, second_metrics = learner.trainer.advance_batch(setup.config, second, CHUNK)
    assert leaves_equal(first, second) and leaves_equal(first_metrics, second_metrics)
    carry, _ = learner.trainer.advance_batch(setup.config, tiny.start(name, [3, 5], [1e-3, 1e-3])[2], CHUNK)
    assert not leaves_equal(jax.tree.map(lambda x: x[1], carry.params), jax.tree.map(lambda x: x[1], first.params))


@pytest.mark.parametrize("name", LEARNERS)
def test_resumed_from_a_checkpoint_equals_uninterrupted(name: str, tmp_path: Path) -> None:
    """Half the budget, checkpoint, reload into a template, the rest == straight through,
    bit for bit, with the same history (per-update metrics and evaluations)."""
    _resume_equals_uninterrupted(name, tmp_path, {})


@pytest.mark.slow
@pytest.mark.parametrize("name", ["snake-ppo", "snake-dqn"])
def test_a_world_with_levels_resumes_bit_identical(name: str, tmp_path: Path) -> None:
    """The same with levels and walls: the level seed is part of the carry."""
    _resume_equals_uninterrupted(name, tmp_path, {"env": tiny.LEVELS})


def _resume_equals_uninterrupted(name: str, tmp_path: Path, options: dict) -> None:
    learner, setup, carry = tiny.start(name, [5, 6], [1e-3, 0.0], **options)
    total = learner.total_updates(setup)
    half = total // 2
    straight, straight_history = training.train(learner.trainer, setup.config, carry, total, CHUNK, eval_every=2)
    first, history = training.train(
        learner.trainer, setup.config, tiny.start(name, [5, 6], [1e-3, 0.0], **options)[2], half, CHUNK, eval_every=2
    )
    path = checkpoint.save(tmp_path / "carry.npz", first)
    restored = checkpoint.load(path, tiny.start(name, [0, 0], [0.0, 0.0], **options)[2])
    assert leaves_equal(restored, first)
    resumed, history = training.train(
        learner.trainer, setup.config, restored, total, CHUNK, eval_every=2, history=history
    )
    assert leaves_equal(resumed, straight)
    for name_, values in straight_history.updates.items():
        np.testing.assert_array_equal(history.updates[name_], values)
    for name_, values in straight_history.evaluations.items():
        np.testing.assert_array_equal(history.evaluations[name_], values)
    assert history.evaluated_at == straight_history.evaluated_at == list(range(0, total + 1, 2))


@pytest.mark.parametrize("name", LEARNERS)
def test_a_run_that_blows_up_is_stopped_alone(name: str) -> None:
    """An infinite L2 strength makes one run's weights non-finite: it is reported as
    failed, and its batch-mate's results are bit for bit those it gets beside a healthy run."""
    learner, setup, mixed = tiny.start(name, [7, 8], [1e-3, float("inf")])
    _, _, healthy = tiny.start(name, [7, 8], [1e-3, 1e-3])
    total = learner.total_updates(setup)
    mixed, history = training.train(learner.trainer, setup.config, mixed, total, CHUNK)
    healthy, healthy_history = training.train(learner.trainer, setup.config, healthy, total, CHUNK)
    assert list(history.failures) == [1] and "became" in history.failures[1]
    assert healthy_history.failures == {}
    first = lambda tree: jax.tree.map(lambda x: x[0], tree)  # noqa: E731
    assert leaves_equal(first(mixed.params), first(healthy.params))
    for metric, values in history.updates.items():
        np.testing.assert_array_equal(values[0], healthy_history.updates[metric][0])
