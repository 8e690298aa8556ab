"""Changing worlds: phases, and what changes at each boundary (``envs/schedule.py``)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny
from conftest import leaves_equal
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from regspeed.cli import app
from regspeed.envs import schedule
from regspeed.errors import ConfigError
from regspeed.learn import checkpoint, common
from regspeed.learn import driver as training


@given(st.integers(0, 2**32 - 1), st.integers(3, 4), st.integers(2, 40), st.integers(2, 12))
def test_every_later_phase_permutes_and_every_action_changes_meaning(
    seed: int, actions: int, observations: int, phases: int
) -> None:
    both = schedule.Schedule(1024, ("actions", "observations"), seed)
    world = schedule.tables(both, actions, observations, phases)
    assert (world.actions[0] == np.arange(actions)).all() and (world.observations[0] == np.arange(observations)).all()
    for phase in range(1, phases):
        assert sorted(world.actions[phase]) == list(range(actions))
        assert not np.any(world.actions[phase] == np.arange(actions))  # a derangement
        assert sorted(world.observations[phase]) == list(range(observations))
    more = schedule.tables(both, actions, observations, phases + 3)
    assert (more.actions[:phases] == world.actions).all() and (more.observations[:phases] == world.observations).all()


def test_only_the_declared_changes_happen() -> None:
    world = schedule.tables(schedule.Schedule(8, ("observations",), 7), 3, 11, 5)
    assert (world.actions == np.arange(3)).all()
    assert not (world.observations[1:] == np.arange(11)).all(axis=1).any()  # 11! permutations: never identity here


def test_derangements_are_uniform() -> None:
    """Each of the 2 derangements of 3 actions and the 9 of 4 about equally often."""
    generator = np.random.default_rng(0)
    for n, count in ((3, 2), (4, 9)):
        seen = [tuple(schedule.derangement(generator, n)) for _ in range(9_000)]
        frequencies = np.array([seen.count(p) for p in set(seen)]) / len(seen)
        assert len(frequencies) == count and np.abs(frequencies - 1 / count).max() < 0.02


def test_the_agent_sees_the_permuted_observation_and_acts_through_the_permutation() -> None:
    world = schedule.WorldTables(np.array([[0, 1, 2], [2, 0, 1]]), np.array([[0, 1, 2, 3], [3, 2, 1, 0]]))
    observation = jnp.arange(8.0).reshape(2, 4)  # a batch of two
    assert (schedule.seen(world, jnp.asarray(1), observation, (4,)) == observation[:, ::-1]).all()
    assert (schedule.seen(world, jnp.asarray(0), observation, (4,)) == observation).all()
    grid = jnp.arange(4.0).reshape(1, 2, 2)  # one (1, 2, 2) observation: every number permuted
    swapped = schedule.WorldTables(world.actions, np.array([np.arange(4), [1, 0, 3, 2]]))
    assert (schedule.seen(swapped, jnp.asarray(1), grid, (1, 2, 2)) == jnp.array([[[1.0, 0], [3, 2]]])).all()
    assert int(schedule.carried_out(world, jnp.asarray(1), jnp.asarray(0))) == 2
    assert [int(schedule.phase_of(jnp.asarray(u), 10, 3)) for u in (0, 9, 10, 29, 30, 99)] == [0, 0, 1, 2, 2, 2]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"phase_steps": -1}, "phase_steps: must be an integer >= 0"),
        ({"phase_steps": 100}, "changes: give what changes every 100 env steps"),
        ({"changes": ("actions",)}, "phase_steps: give the env steps per phase"),
        ({"phase_steps": 100, "changes": ("rules",)}, "changes: unknown change 'rules'"),
        ({"phase_steps": 100, "changes": ("actions", "actions")}, "changes: lists a change twice"),
        ({"phase_steps": 100, "changes": ("actions",), "seed": -1}, "seed: must be an integer from 0"),
    ],
)
def test_a_bad_schedule_is_one_clear_problem(fields: dict, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        schedule.Schedule(**fields)
    assert str(caught.value).startswith(problem)


def test_phases_are_whole_updates() -> None:
    changing = schedule.Schedule(8192 * 5, ("actions",))
    assert changing.phase_updates(8192) == 5 and changing.phases(73, 8192) == 15
    assert schedule.Schedule().phases(73, 8192) == 1
    whole = "must be a whole number of updates .8,192 env steps each; got 10,000.: e.g. 16,384"
    with pytest.raises(ConfigError, match=whole):
        schedule.Schedule(10_000, ("actions",)).phase_updates(8192)


# ------------------------------------------------------------------ the agents in it

AGENTS = ["snake-ppo", "snake-dqn"]


@pytest.mark.parametrize("name", AGENTS)
def test_the_first_phase_is_the_stationary_world_and_the_next_is_not(name: str) -> None:
    """Two updates in phase 0 equal the stationary world's bit for bit (evaluation after
    them too: it plays the world of the last update); the next two, in a changed world, do not."""
    learner, still, fixed = tiny.start(name, [1, 2], [1e-3, 0.0])
    _, changing, moving = tiny.start(name, [1, 2], [1e-3, 0.0], schedule=tiny.CHANGING[name])
    fixed, fixed_metrics = learner.trainer.advance_batch(still.config, fixed, 2)
    moving, moving_metrics = learner.trainer.advance_batch(changing.config, moving, 2)
    assert leaves_equal(fixed, moving)
    for metric, values in fixed_metrics.items():
        np.testing.assert_array_equal(moving_metrics[metric], values)
    for metric, values in learner.trainer.evaluate_batch(still.config, fixed).items():
        np.testing.assert_array_equal(learner.trainer.evaluate_batch(changing.config, moving)[metric], values)
    fixed, _ = learner.trainer.advance_batch(still.config, fixed, 2)
    moving, _ = learner.trainer.advance_batch(changing.config, moving, 2)
    assert not leaves_equal(fixed.params, moving.params)


@pytest.mark.parametrize("name", AGENTS)
def test_the_agent_meets_each_phase_through_its_permutations(name: str) -> None:
    """The perspective of an update in phase k sees the world's observations permuted by the
    phase's table and carries out the phase's action; phase 0 is the identity."""
    config = tiny.setup(name, schedule=tiny.CHANGING[name]).config
    world = common.world_tables(config)
    assert world is not None and len(world.actions) == -(-config.total_updates // 2)
    observation = jnp.arange(float(np.prod(config.env.observation_shape)))
    for update, phase in ((0, 0), (1, 0), (2, 1), (5, 2)):
        view = common.perspective(config, update)
        np.testing.assert_array_equal(view.see(observation), observation[world.observations[phase]])
        assert [int(view.act(jnp.asarray(a))) for a in range(config.env.num_actions)] == list(world.actions[phase])
    assert common.world_tables(tiny.setup(name).config) is None


@pytest.mark.slow
@pytest.mark.parametrize("name", AGENTS)
def test_a_changing_world_resumes_bit_identical(name: str, tmp_path: Path) -> None:
    """Killed mid-phase and resumed from its checkpoint, a run ends as if uninterrupted: the
    phase follows from the update count in the carry."""
    options = {"schedule": tiny.CHANGING[name]}
    learner, setup, carry = tiny.start(name, [5, 6], [1e-3, 0.0], **options)
    total = learner.total_updates(setup)
    straight, straight_history = training.train(learner.trainer, setup.config, carry, total, 3, eval_every=2)
    first, history = training.train(learner.trainer, setup.config, tiny.start(name, [5, 6], [1e-3, 0.0], **options)[2],
                                    3, 3, eval_every=2)  # fmt: skip
    template = tiny.start(name, [0, 0], [0.0, 0.0], **options)[2]
    restored = checkpoint.load(checkpoint.save(tmp_path / "carry.npz", first), template)
    resumed, history = training.train(learner.trainer, setup.config, restored, total, 3, eval_every=2, history=history)
    assert leaves_equal(resumed, straight) and jax.tree.structure(resumed) == jax.tree.structure(straight)
    for metric, values in straight_history.updates.items():
        np.testing.assert_array_equal(history.updates[metric], values)


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('phase_steps = 1000\nchanges = ["actions"]', "config.schedule.phase_steps: must be a whole number of updates"),
        ('phase_steps = 15_360\nchanges = ["actions"]', "config.schedule.phase_steps: must be shorter than the budget"),
        ('phase_steps = 1024\nchanges = ["rules"]', "config.schedule.changes: unknown change 'rules'"),
        ("phase_steps = 1024", "config.schedule.changes: give what changes every 1024 env steps"),
        ('phase_steps = 1024\nchanges = ["actions"]\nwhen = 3', "config.schedule.when: unknown key"),
    ],
)
def test_a_bad_schedule_in_a_spec_exits_2_with_its_path(tmp_path: Path, table: str, problem: str) -> None:
    from test_study import TINY_SPEC

    path = tmp_path / "changing.toml"
    path.write_text(TINY_SPEC.replace("[config.ppo]", f"[config.schedule]\n{table}\n[config.ppo]", 1))
    result = CliRunner().invoke(app, ["study", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and problem in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
