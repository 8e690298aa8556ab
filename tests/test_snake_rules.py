"""The Snake world against an independent model of its rules, over random actions and sizes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference_snake as ref
from conftest import CONFIGS, STEPS, batched_rollout, index, rollout
from hypothesis import given
from hypothesis import strategies as st

from regspeed.envs import snake

config_indices = st.integers(0, len(CONFIGS) - 1)
seeds = st.integers(0, 2**31 - 1)
action_lists = st.lists(st.integers(0, 3), min_size=STEPS, max_size=STEPS)


def actions_for(config: snake.SnakeConfig, raw: list[int]) -> np.ndarray:
    return np.asarray(raw, np.int32) % config.num_actions


@pytest.mark.slow
@given(config_indices, seeds, action_lists)
def test_every_step_follows_the_rules(config_index: int, seed: int, raw_actions: list[int]) -> None:
    """Heading, head move, body, growth, food, rewards, terminated vs truncated, cause and
    reset all agree with the reference model, step by step."""
    config = CONFIGS[config_index]
    actions = actions_for(config, raw_actions)
    states, timesteps = rollout(config, jax.random.key(seed), jnp.asarray(actions))
    eaten_this_episode = 0
    first = ref.snapshot(config, index(states, 0))
    assert ref.is_fresh_start(config, first)
    for t in range(STEPS):
        before = ref.snapshot(config, index(states, t))
        after = ref.snapshot(config, index(states, t + 1))
        ts = index(timesteps, t)
        expected = ref.step(config, before, int(actions[t]))

        assert bool(ts.terminated) == expected.terminated
        assert bool(ts.truncated) == expected.truncated
        assert not (ts.terminated and ts.truncated)
        assert snake.Cause(int(ts.cause)) == expected.cause
        assert float(ts.reward) == pytest.approx(expected.reward)
        eaten_this_episode += expected.ate
        assert int(ts.episode_score) == eaten_this_episode
        assert int(ts.episode_length) == config.initial_length + eaten_this_episode == len(expected.body)
        assert int(ts.episode_steps) == before.steps + 1

        if expected.terminated or expected.truncated:
            assert ref.is_fresh_start(config, after)
            eaten_this_episode = 0
            continue
        # The head moved exactly one cell in the chosen direction; the body followed it.
        assert after.heading == expected.heading
        assert after.body == expected.body
        assert after.body[0] == expected.target
        assert ref.is_connected(after.body)
        assert after.food not in after.body
        if not expected.ate:
            assert after.food == before.food
        assert after.steps_since_food == (0 if expected.ate else before.steps_since_food + 1)


@pytest.mark.slow
@given(config_indices, seeds, action_lists)
def test_final_observation_is_of_the_state_reached_before_reset(
    config_index: int, seed: int, raw_actions: list[int]
) -> None:
    """Where an episode ends, ``final_observation`` shows the reached state and
    ``observation`` the fresh one; elsewhere they are the same."""
    config = CONFIGS[config_index]
    actions = jnp.asarray(actions_for(config, raw_actions))
    states, timesteps = rollout(config, jax.random.key(seed), actions)
    done = np.asarray(timesteps.terminated | timesteps.truncated)
    obs, final = np.asarray(timesteps.observation), np.asarray(timesteps.final_observation)
    np.testing.assert_array_equal(obs[~done], final[~done])
    after = jax.tree.map(lambda x: x[1:], states)
    np.testing.assert_array_equal(obs, np.asarray(jax.vmap(lambda s: snake.observe(config, s))(after)))
    for t in np.flatnonzero(done):
        reached, _ = jax.jit(snake.step, static_argnums=0)(config, index(states, int(t)), actions[t])
        np.testing.assert_array_equal(final[t], np.asarray(snake.observe(config, reached)))


@pytest.mark.slow
@given(config_indices, seeds, action_lists)
def test_same_key_same_trajectory_and_vmap_agrees(config_index: int, seed: int, raw_actions: list[int]) -> None:
    """A rollout is a function of its key and actions; batching does not change it."""
    config = CONFIGS[config_index]
    actions = jnp.asarray(actions_for(config, raw_actions))
    key = jax.random.key(seed)
    first = rollout(config, key, actions)
    second = rollout(config, key, actions)
    other_key = jax.random.key(seed + 1)
    batched = batched_rollout(config, jnp.stack([other_key, key]), jnp.stack([actions[::-1], actions]))
    for a, b, c in zip(jax.tree.leaves(first), jax.tree.leaves(second), jax.tree.leaves(batched), strict=True):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b, c = jax.random.key_data(a), jax.random.key_data(b), jax.random.key_data(c)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c[1]))


def test_unjitted_steps_agree_with_jitted() -> None:
    """The pure functions give the same result traced or executed op by op."""
    config = CONFIGS[0]
    actions = jnp.asarray([0, 2, 2, 1], jnp.int32)
    states, timesteps = rollout(config, jax.random.key(3), actions)
    state = snake.reset(config, jax.random.key(3))
    for t in range(len(actions)):
        state, timestep = snake.autoreset_step(config, state, actions[t])
        expected = index(states, t + 1)
        np.testing.assert_array_equal(np.asarray(state.body), expected.body)
        np.testing.assert_array_equal(np.asarray(state.food), expected.food)
        assert float(timestep.reward) == float(timesteps.reward[t])


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.rows}x{c.cols}-L{c.initial_length}")
def test_fresh_food_rule_matches_the_general_sampler(config: snake.SnakeConfig) -> None:
    """The O(length) food draw of a fresh board picks the same cell as the general
    k-th-free-cell sampler would, for thousands of random starts."""
    words = jax.random.bits(jax.random.key(0), (3000, 3), jnp.uint32)
    starts = jax.vmap(lambda w: snake._initial_snake(config, w))(words)
    k = words[:, 2] % np.uint32(config.num_cells - config.initial_length)
    general = jax.vmap(lambda body, w: snake._sample_free_cell(config, body, w))(starts.body, k)
    np.testing.assert_array_equal(np.asarray(general), np.asarray(starts.food))


def test_food_is_uniform_over_free_cells() -> None:
    """Food positions on a fixed board are uniform over its free cells (chi-square)."""
    from scipy.stats import chisquare

    config = snake.SnakeConfig(rows=6, cols=6)
    state = snake.reset(config, jax.random.key(11))
    body = state.body
    words = jax.random.bits(jax.random.key(5), (36_000,), jnp.uint32)
    cells = jax.vmap(lambda w: snake._sample_free_cell(config, body, w))(words)
    flat = np.asarray(cells[:, 0] * config.cols + cells[:, 1])
    free = np.flatnonzero(np.asarray(body) == 0)
    assert set(np.unique(flat)) == set(free)  # every free cell, and only free cells
    counts = np.bincount(flat, minlength=config.num_cells)[free]
    assert chisquare(counts).pvalue > 1e-3


def test_starts_cover_every_heading_and_fitting_position() -> None:
    """Resets place the snake uniformly among all fitting (heading, head) pairs."""
    config = snake.SnakeConfig(rows=5, cols=6, initial_length=3)
    states = snake.reset_batch(config, jax.random.key(0), 20_000)
    pairs = set(zip(np.asarray(states.heading).tolist(), map(tuple, np.asarray(states.head).tolist()), strict=True))
    expected = set()
    for heading, (dr, dc) in ref.MOVES.items():
        for r in range(config.rows):
            for c in range(config.cols):
                tail = (r - 2 * dr, c - 2 * dc)
                ahead = (r + dr, c + dc)
                cells = (tail, ahead)
                if all(0 <= x < config.rows and 0 <= y < config.cols for x, y in cells):
                    expected.add((heading, (r, c)))
    assert pairs == expected


def test_win_fills_the_board_and_terminates() -> None:
    """Eating the last free cell is a win: terminated, not truncated, with the bonus."""
    config = snake.SnakeConfig(rows=4, cols=4, initial_length=2, reward_win=5.0)
    # A Hamiltonian cycle on a 4 x 4 board; the snake fills it cell by cell.
    cycle = [(0, 0), (0, 1), (0, 2), (0, 3), (1, 3), (2, 3), (3, 3), (3, 2),
             (3, 1), (3, 0), (2, 0), (2, 1), (2, 2), (1, 2), (1, 1), (1, 0)]  # fmt: skip
    lifetimes = np.zeros(16, np.int32)
    length = 15  # occupies all but the last cell; head at cycle[14], tail at cycle[0]
    for age, (r, c) in enumerate(cycle[:15][::-1]):
        lifetimes[r * 4 + c] = length - age
    state = snake.reset(config, jax.random.key(0)).replace(
        body=jnp.asarray(lifetimes),
        head=jnp.asarray(cycle[14], jnp.int32),
        heading=jnp.asarray(snake.LEFT, jnp.int32),
        food=jnp.asarray(cycle[15], jnp.int32),
        length=jnp.asarray(length, jnp.int32),
    )
    reached, timestep = snake.step(config, state, jnp.asarray(snake.STRAIGHT))
    assert bool(timestep.terminated) and not bool(timestep.truncated)
    assert snake.Cause(int(timestep.cause)) == snake.Cause.WON
    assert float(timestep.reward) == pytest.approx(config.reward_food + config.reward_win)
    assert int(reached.length) == 16 and (np.asarray(reached.body) > 0).all()


def test_absolute_mode_ignores_reversal_and_masks_it() -> None:
    config = snake.SnakeConfig(action_mode="absolute")
    state = snake.reset(config, jax.random.key(1))
    reverse = (int(state.heading) + 2) % 4
    mask = np.asarray(snake.action_mask(config, state))
    assert mask.tolist() == [a != reverse for a in range(4)]
    assert int(snake.next_heading(config, state.heading, jnp.asarray(reverse))) == int(state.heading)


def test_shaping_is_potential_based() -> None:
    """With gamma = 1, shaping rewards telescope: over an episode that terminates they sum
    to minus the starting potential, whatever the policy (so optimal policies are kept)."""
    config = snake.SnakeConfig(
        rows=6, cols=6, shaping=1.0, shaping_gamma=1.0, reward_food=0.0, reward_death=0.0, reward_win=0.0
    )
    for seed in range(3):
        actions = jax.random.randint(jax.random.key(100 + seed), (200,), 0, 3)
        states, timesteps = rollout(config, jax.random.key(seed), actions)
        done = np.asarray(timesteps.terminated)
        assert done.any() and not np.asarray(timesteps.truncated)[: np.argmax(done) + 1].any()
        end = int(np.argmax(done))
        first = index(states, 0)
        start_potential = -np.abs(first.head - first.food).sum() / (config.rows + config.cols - 2)
        total = float(np.asarray(timesteps.reward)[: end + 1].sum())
        assert total == pytest.approx(-start_potential, abs=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rows": 3}, "rows"),
        ({"cols": 65}, "cols"),
        ({"rows": 5, "initial_length": 5}, "initial_length"),
        ({"initial_length": 0}, "initial_length"),
        ({"observation": "pixels"}, "observation"),
        ({"action_mode": "diagonal"}, "action_mode"),
        ({"starvation_limit": -1}, "starvation_limit"),
        ({"time_limit": 0}, "time_limit"),
        ({"window_size": 4}, "window_size"),
        ({"shaping": -0.5}, "shaping"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_parameters_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(snake.ConfigError) as error:
        snake.to_config(**kwargs)
    assert error.value.field == field
    assert str(error.value).startswith(f"{field}: ") and "\n" not in str(error.value)
