"""Changing worlds: phases, and what changes at each boundary (``envs/schedule.py``)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from regspeed.envs import schedule
from regspeed.errors import ConfigError


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
