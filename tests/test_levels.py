"""Levels: boards with walls inside them, the start and the food fixed by a level seed.

The world with levels against the reference model of the rules (tests/reference_snake.py,
which knows walls), over random sizes, obstacle densities, level sets, observations and
action modes; the levels' own properties (connected free cells, determinism, the training
seeds played uniformly, the wall fraction); and ``regspeed play`` on boards with walls.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import reference_snake as ref
from conftest import CONFIGS, STEPS, index, leaves_equal, level_rollout, rollout
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from regspeed.cli import app
from regspeed.cli.play import held_out_offset_clear_of
from regspeed.envs import play as play_module
from regspeed.envs import render, snake

runner = CliRunner()
seeds = st.integers(0, 2**31 - 1)
action_lists = st.lists(st.integers(0, 3), min_size=STEPS, max_size=STEPS)

# One world with levels shared by the quick tests, so that they compile its programs once.
WALLED = snake.SnakeConfig(
    rows=6,
    cols=7,
    initial_length=2,
    obstacle_density=0.2,
    levels=5,
    level_seed_offset=11,
    observation="window",
    window_size=5,
    starvation_limit=30,
)


@st.composite
def level_configs(draw: st.DrawFn) -> snake.SnakeConfig:
    """A random world with levels: sizes 4..12, densities 0..0.25, a random level per episode
    or K training levels, every observation and action mode, sometimes short limits."""
    rows, cols = draw(st.integers(4, 12)), draw(st.integers(4, 12))
    levels = draw(st.one_of(st.just(0), st.integers(1, 40)))
    # Densities just below 0.25 are test_a_density_just_below_the_maximum_makes_levels's business.
    density = draw(st.one_of(st.just(0.0), st.just(0.25), st.floats(0.0, 0.2499)))
    if levels == 0 and density == 0:
        density = draw(st.floats(0.01, 0.25))
    offset = draw(st.integers(0, 2**31 - 1 - levels))
    return snake.SnakeConfig(
        rows=rows,
        cols=cols,
        initial_length=draw(st.integers(1, min(rows, cols) - 1)),
        action_mode=draw(st.sampled_from(snake.ACTION_MODES)),
        observation=draw(st.sampled_from(snake.OBSERVATIONS)),
        window_size=draw(st.sampled_from((3, 5, 7))),
        starvation_limit=draw(st.one_of(st.none(), st.integers(4, 40))),
        time_limit=draw(st.one_of(st.none(), st.integers(8, 60))),
        obstacle_density=density,
        levels=levels,
        level_seed_offset=offset,
        held_out_level_offset=offset + levels,  # clear of the training levels, below 2**31
    )


def actions_for(config: snake.SnakeConfig, raw: list[int]) -> np.ndarray:
    """Random raw actions folded into the config's action space."""
    return np.asarray(raw, np.int32) % config.num_actions


def is_training_level(config: snake.SnakeConfig, level: int) -> bool:
    """Whether ``level`` is one that training episodes may play."""
    if config.levels:
        return config.level_seed_offset <= level < config.level_seed_offset + config.levels
    return 0 <= level < snake.LEVEL_SEEDS


def wall_cells(config: snake.SnakeConfig, mask: np.ndarray) -> frozenset[ref.Cell]:
    """The cells of a row-major bool mask over the board."""
    grid = np.asarray(mask).reshape(config.rows, config.cols)
    return frozenset((int(r), int(c)) for r, c in np.argwhere(grid))


def check_level_start(config: snake.SnakeConfig, start: ref.Snapshot) -> None:
    """A level's fresh episode: a valid start, the walls of its level seed, its first food."""
    assert ref.is_fresh_start(config, start)
    assert start.walls == wall_cells(config, snake.level_walls(config, np.uint32(start.level)))
    assert start.food == ref.level_food(config, start, 0)
    if config.obstacle_density == 0:
        assert not start.walls


def reached_snapshot(
    config: snake.SnakeConfig, before: ref.Snapshot, expected: ref.Outcome, eaten: int
) -> ref.Snapshot:
    """The state one step reaches by the rules, before any reset: food re-drawn where the
    snake ate (unless it won: then nowhere is free and the food stays)."""
    reached = ref.Snapshot(
        body=expected.body,
        heading=expected.heading,
        food=before.food,
        steps=before.steps + 1,
        steps_since_food=0 if expected.ate else before.steps_since_food + 1,
        walls=before.walls,
        level=before.level,
    )
    if expected.ate and expected.cause != snake.Cause.WON:
        reached.food = ref.level_food(config, reached, eaten)
    return reached


def check_step(
    config: snake.SnakeConfig, before: ref.Snapshot, after: ref.Snapshot, ts, action: int, eaten: int
) -> int:
    """One step of a world with levels against the rules; returns the food eaten in the episode after it."""
    expected = ref.step(config, before, action)
    assert bool(ts.terminated) == expected.terminated
    assert bool(ts.truncated) == expected.truncated
    assert snake.Cause(int(ts.cause)) == expected.cause
    assert float(ts.reward) == pytest.approx(expected.reward)
    if expected.target in before.walls:
        assert expected.cause == snake.Cause.WALL and expected.body == before.body  # never through a wall
    eaten += expected.ate
    assert int(ts.episode_score) == eaten
    assert int(ts.episode_length) == config.initial_length + eaten == len(expected.body)
    assert int(ts.episode_steps) == before.steps + 1
    reached = reached_snapshot(config, before, expected, eaten)
    np.testing.assert_allclose(np.asarray(ts.final_observation), ref.observe(config, reached), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(ts.observation), ref.observe(config, after), rtol=1e-6)
    if expected.terminated or expected.truncated:
        check_level_start(config, after)
        return 0
    assert after.walls == before.walls and after.level == before.level  # walls never change in an episode
    assert after.heading == expected.heading and after.body == expected.body
    assert ref.is_connected(after.body)
    assert after.food not in after.body and after.food not in after.walls
    assert after.food == reached.food
    assert after.steps_since_food == reached.steps_since_food
    return eaten


@pytest.mark.slow
@settings(max_examples=12)  # each example compiles its own world (about 1.4 s): 20 cost 28 s of make test
@given(level_configs(), seeds, action_lists)
def test_every_step_follows_the_rules_with_walls(config: snake.SnakeConfig, seed: int, raw: list[int]) -> None:
    """Moves, walls (a move into one ends the episode with Cause.WALL), food (the level's
    sequence, never on a wall or the body), wins (every free cell filled), limits, rewards,
    observations and the levels of fresh episodes all follow the reference model."""
    actions = actions_for(config, raw)
    states, timesteps = rollout(config, jax.random.key(seed), jnp.asarray(actions))
    first = ref.snapshot(config, index(states, 0))
    check_level_start(config, first)
    assert is_training_level(config, first.level)
    eaten = 0
    for t in range(STEPS):
        before = ref.snapshot(config, index(states, t))
        after = ref.snapshot(config, index(states, t + 1))
        eaten = check_step(config, before, after, index(timesteps, t), int(actions[t]), eaten)
        assert is_training_level(config, after.level)


def board_state(
    config: snake.SnakeConfig,
    body: list[ref.Cell],
    heading: int,
    food: ref.Cell,
    walls: list[ref.Cell],
) -> snake.SnakeState:
    """A state of a world with levels laid out by hand: the snake (head first), its heading,
    the food and the walls."""
    lifetimes = np.zeros((config.rows, config.cols), np.int32)
    for r, c in walls:
        lifetimes[r, c] = snake.WALL
    for age, (r, c) in enumerate(body):
        lifetimes[r, c] = len(body) - age
    return snake.reset_to_level(config, 0, jax.random.key(0)).replace(
        body=jnp.asarray(lifetimes.ravel()),
        head=jnp.asarray(body[0], jnp.int32),
        heading=jnp.asarray(heading, jnp.int32),
        food=jnp.asarray(food, jnp.int32),
        length=jnp.asarray(len(body), jnp.int32),
    )


def test_a_move_into_a_wall_ends_the_episode_with_cause_wall() -> None:
    """Straight into a wall inside the board: terminated, Cause.WALL, the death reward, the
    snake stays where it was; turning beside the wall is safe."""
    config = snake.SnakeConfig(rows=5, cols=5, initial_length=2, obstacle_density=0.1, reward_death=-2.0)
    state = board_state(config, [(2, 1), (2, 0)], snake.RIGHT, (0, 4), walls=[(2, 2)])
    reached, ts = snake.step(config, state, jnp.asarray(snake.STRAIGHT))
    assert bool(ts.terminated) and not bool(ts.truncated)
    assert snake.Cause(int(ts.cause)) == snake.Cause.WALL and float(ts.reward) == -2.0
    np.testing.assert_array_equal(np.asarray(reached.body), np.asarray(state.body))
    assert tuple(np.asarray(reached.head)) == (2, 1)
    assert ref.step(config, ref.snapshot(config, state), snake.STRAIGHT).cause == snake.Cause.WALL
    turned, ts = snake.step(config, state, jnp.asarray(snake.TURN_LEFT))
    assert snake.Cause(int(ts.cause)) == snake.Cause.RUNNING and tuple(np.asarray(turned.head)) == (1, 1)
    assert int(np.asarray(turned.body)[2 * 5 + 2]) == snake.WALL  # the wall is still there


def test_win_fills_every_free_cell() -> None:
    """Eating the last cell that is neither wall nor body wins, though walls remain; the
    same move on the board without the wall is no win."""
    config = snake.SnakeConfig(rows=4, cols=4, initial_length=2, obstacle_density=0.1, reward_win=5.0)
    cycle = [(0, 0), (0, 1), (0, 2), (0, 3), (1, 3), (2, 3), (3, 3), (3, 2),
             (3, 1), (3, 0), (2, 0), (2, 1), (2, 2), (1, 2), (1, 1), (1, 0)]  # fmt: skip
    body = cycle[1:15][::-1]  # head at (1, 1) moving left, every other cell but (1, 0) and the wall
    state = board_state(config, body, snake.LEFT, cycle[15], walls=[cycle[0]])
    reached, ts = snake.step(config, state, jnp.asarray(snake.STRAIGHT))
    assert bool(ts.terminated) and snake.Cause(int(ts.cause)) == snake.Cause.WON
    assert float(ts.reward) == pytest.approx(config.reward_food + config.reward_win)
    assert int(reached.length) == 15 and int(np.asarray(reached.body)[0]) == snake.WALL
    assert ref.step(config, ref.snapshot(config, state), snake.STRAIGHT).cause == snake.Cause.WON
    no_wall = board_state(config, body, snake.LEFT, cycle[15], walls=[])
    _, ts = snake.step(config, no_wall, jnp.asarray(snake.STRAIGHT))
    assert snake.Cause(int(ts.cause)) == snake.Cause.RUNNING and int(ts.episode_score) == 13


@functools.partial(jax.jit, static_argnums=0)
def level_starts(config: snake.SnakeConfig, levels: jax.Array) -> snake.SnakeState:
    """The fresh episodes of a batch of level seeds."""
    return jax.vmap(lambda level: snake.reset_to_level(config, level, jax.random.key(0)))(levels)


def check_level_layout(config: snake.SnakeConfig, start: ref.Snapshot) -> None:
    """Walls on one pillar lattice, never touching, free cells 4-connected, the snake's start
    on a line without walls, with a free cell ahead."""
    walls = start.walls
    assert len({(r % 2, c % 2) for r, c in walls}) <= 1, "walls on more than one lattice"
    for r, c in walls:
        neighbours = {(r + dr, c + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)} - {(r, c)}
        assert not neighbours & walls, f"walls touch at {(r, c)}"
    free = {(r, c) for r in range(config.rows) for c in range(config.cols)} - walls
    assert ref.flood_fill(config, start.body[0], walls) == free, "the free cells are not 4-connected"
    assert ref.is_fresh_start(config, start)  # body and the cell ahead free
    head = start.body[0]
    vertical = start.heading in (snake.UP, snake.DOWN)
    line = {(r, head[1]) for r in range(config.rows)} if vertical else {(head[0], c) for c in range(config.cols)}
    assert not line & walls, "the snake starts on a line with a wall"


def check_levels(config: snake.SnakeConfig, first: int, count: int) -> None:
    """:func:`check_level_layout` and :func:`check_level_start` for ``count`` levels from ``first``."""
    starts = level_starts(config, jnp.arange(first, first + count, dtype=jnp.uint32))
    for i in range(count):
        start = ref.snapshot(config, index(starts, i))
        assert start.level == first + i
        check_level_layout(config, start)
        check_level_start(config, start)


@pytest.mark.parametrize(
    "config",
    [
        snake.SnakeConfig(rows=4, cols=4, initial_length=3, obstacle_density=0.25, levels=3),
        snake.SnakeConfig(rows=7, cols=5, initial_length=2, obstacle_density=0.25),
        snake.SnakeConfig(rows=9, cols=12, obstacle_density=0.15, levels=9),
    ],
    ids=["4x4-full", "7x5-full", "9x12"],
)
def test_levels_keep_free_cells_connected(config: snake.SnakeConfig) -> None:
    """On 100 levels (the densest ones included, odd sizes too), free cells are 4-connected,
    walls never touch, and the snake starts on a line without walls with room ahead."""
    check_levels(config, 0, 100)


@pytest.mark.slow
@settings(max_examples=20)
@given(level_configs(), seeds)
def test_levels_keep_free_cells_connected_in_random_worlds(config: snake.SnakeConfig, first: int) -> None:
    """:func:`test_levels_keep_free_cells_connected` over random worlds and level seeds."""
    check_levels(config, min(first, snake.LEVEL_SEEDS - 32), 32)


def episode_until_done(config: snake.SnakeConfig, level: int, key: jax.Array, actions: jax.Array):
    """A level's first episode, played with ``actions``, as host arrays: the states through
    the one that ended it (the key aside) and its time steps (what does not show the next episode)."""
    states, timesteps = level_rollout(config, jnp.uint32(level), key, actions)
    done = np.asarray(timesteps.terminated | timesteps.truncated)
    end = int(np.argmax(done)) if done.any() else len(done) - 1
    kept_states = {name: np.asarray(getattr(states, name))[: end + 1] for name in ("body", "head", "heading", "food")}
    kept_states |= {name: np.asarray(getattr(states, name))[: end + 1] for name in ("length", "steps", "level")}
    fields = ("reward", "terminated", "truncated", "cause", "episode_score", "final_observation")
    kept = {name: np.asarray(getattr(timesteps, name))[: end + 1] for name in fields}
    kept["observation"] = np.asarray(timesteps.observation)[:end]
    return kept_states, kept, np.asarray(done.any())


@settings(max_examples=10)
@given(st.integers(0, WALLED.levels - 1), seeds, seeds, action_lists)
def test_same_level_and_actions_play_the_same_episode(offset: int, seed_a: int, seed_b: int, raw: list[int]) -> None:
    """A level played the same way plays out the same, whatever the key: walls, start, every
    food and every reward (the key only draws the levels of later episodes)."""
    actions = jnp.asarray(actions_for(WALLED, raw))
    level = WALLED.level_seed_offset + offset
    first = episode_until_done(WALLED, level, jax.random.key(seed_a), actions)
    second = episode_until_done(WALLED, level, jax.random.key(seed_b), actions)
    assert leaves_equal(first, second)
    assert (first[0]["level"] == level).all()


def test_levels_differ_from_one_another() -> None:
    """Different level seeds give different boards: the level seed is not ignored."""
    starts = level_starts(WALLED, jnp.arange(40, dtype=jnp.uint32))
    boards = {np.asarray(starts.body[i]).tobytes() for i in range(40)}
    walls = {np.asarray(starts.body[i] < 0).tobytes() for i in range(40)}
    assert len(boards) >= 35 and len(walls) >= 20


def test_training_levels_are_in_range_and_played_uniformly() -> None:
    """``levels = K`` plays only seeds ``offset .. offset + K - 1``, every one of them, about
    equally often (chi-square), at reset and at every auto-reset."""
    from scipy.stats import chisquare

    config = snake.SnakeConfig(rows=5, cols=5, obstacle_density=0.1, levels=7, level_seed_offset=100, time_limit=1)
    keys = jax.random.split(jax.random.key(4), 7000)

    @jax.jit
    def levels_drawn(keys: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        states = jax.vmap(lambda k: snake.reset(config, k))(keys)
        after, ts = jax.vmap(lambda s: snake.autoreset_step(config, s, jnp.asarray(0)))(states)
        return states.level, after.level, ts.truncated | ts.terminated  # every episode ends after one step

    at_reset, at_autoreset, done = levels_drawn(keys)
    assert np.asarray(done).all()
    for drawn in (at_reset, at_autoreset):
        drawn = np.asarray(drawn, np.int64)
        assert drawn.min() >= 100 and drawn.max() <= 106, "a level outside the training set"
        counts = np.bincount(drawn - 100, minlength=7)
        assert (counts > 0).all() and chisquare(counts).pvalue > 1e-3


def test_levels_zero_draws_a_fresh_level_per_episode() -> None:
    """``levels = 0`` with obstacles: nearly every episode a level seed of its own, below 2**31."""
    config = snake.SnakeConfig(rows=6, cols=6, obstacle_density=0.2)
    drawn = np.asarray(snake.reset_batch(config, jax.random.key(1), 2000).level, np.int64)
    assert drawn.max() < snake.LEVEL_SEEDS and len(np.unique(drawn)) >= 1990


@pytest.mark.parametrize(
    ("rows", "cols", "density"),
    [(4, 4, 0.25), (5, 5, 0.1), (7, 12, 0.05), (9, 6, 0.2), (12, 12, 0.125), (11, 4, 0.01)],
)
def test_average_wall_fraction_is_the_obstacle_density(rows: int, cols: int, density: float) -> None:
    """Over 20,000 levels, the mean share of cells that are walls is ``obstacle_density``
    (odd sizes too: the lattice's parity is drawn per level)."""
    config = snake.SnakeConfig(rows=rows, cols=cols, obstacle_density=density)
    walls = jax.vmap(lambda level: snake.level_walls(config, level))(jnp.arange(20_000, dtype=jnp.uint32))
    fraction = np.asarray(walls).mean(axis=1)
    tolerance = 5 * fraction.std() / np.sqrt(len(fraction)) + 1e-9
    assert abs(fraction.mean() - density) < tolerance


OBSERVATION_CONFIGS = {
    name: snake.SnakeConfig(rows=7, cols=7, initial_length=3, observation=name, window_size=5, obstacle_density=0.1)
    for name in snake.OBSERVATIONS
}


def wall_ahead(config: snake.SnakeConfig, walls: list[ref.Cell]) -> snake.SnakeState:
    """The snake heading up at (2, 3) with the given walls (one ahead at (1, 3), one at (3, 1))."""
    return board_state(config, [(2, 3), (3, 3), (4, 3)], snake.UP, (6, 6), walls)


@pytest.mark.parametrize("observation", snake.OBSERVATIONS)
def test_observations_show_walls(observation: str) -> None:
    """The grid's wall channel, the window's wall channel and the features' danger bits show
    walls inside the board exactly as the reference model does, and differ from the same
    board without them."""
    config = OBSERVATION_CONFIGS[observation]
    state = wall_ahead(config, [(1, 3), (3, 1)])
    seen = np.asarray(snake.observe(config, state))
    np.testing.assert_allclose(seen, ref.observe(config, ref.snapshot(config, state)), rtol=1e-6)
    clear = np.asarray(snake.observe(config, wall_ahead(config, [])))
    if observation == "grid":
        assert seen.shape == (4, 7, 7)
        assert wall_cells(config, seen[3] > 0) == {(1, 3), (3, 1)} and wall_cells(config, clear[3] > 0) == set()
        assert (seen[1] >= 0).all()
    elif observation == "features":
        assert seen[:3].tolist() == [1.0, 0.0, 0.0] and clear[:3].tolist() == [0.0, 0.0, 0.0]
    else:
        wall, clear_wall = seen[:25].reshape(5, 5), clear[:25].reshape(5, 5)
        # Window row 1 is one cell ahead of the head (window centre (2, 2)); row 3, column 0
        # is one behind and two to the left (the snake faces up: its left is the board's left).
        assert wall[1, 2] == 1 and wall[3, 0] == 1 and clear_wall[1, 2] == 0 and clear_wall[3, 0] == 0
        assert (wall - clear_wall).sum() == 2


def test_grid_has_no_wall_channel_without_obstacles() -> None:
    """Levels without obstacles (``levels > 0``, density 0) keep the three grid channels."""
    config = snake.SnakeConfig(rows=5, cols=5, levels=3)
    state = snake.reset(config, jax.random.key(0))
    assert config.has_levels and config.observation_shape == (3, 5, 5)
    assert snake.observe(config, state).shape == (3, 5, 5) and not (np.asarray(state.body) < 0).any()


@pytest.mark.slow  # op by op: 18 s with nothing compiled yet
def test_jit_and_vmap_agree_with_unjitted_single_steps() -> None:
    """Stepping a level op by op, in a compiled scan, and vmapped beside another level, gives
    the same states and rewards."""
    actions = jnp.asarray([0, 2, 2, 1, 0, 0, 1, 2], jnp.int32)
    key, level = jax.random.key(3), jnp.uint32(WALLED.level_seed_offset + 2)
    states, timesteps = level_rollout(WALLED, level, key, actions)
    batched = jax.jit(jax.vmap(lambda lv, k, a: level_rollout(WALLED, lv, k, a)))(
        jnp.stack([level + 1, level]), jnp.stack([jax.random.key(9), key]), jnp.stack([actions[::-1], actions])
    )
    assert leaves_equal((states, timesteps), jax.tree.map(lambda x: x[1], batched))
    state = snake.reset_to_level(WALLED, level, key)
    for t in range(len(actions)):
        state, timestep = snake.autoreset_step(WALLED, state, actions[t])
        expected = index(states, t + 1)
        for name in ("body", "head", "heading", "food", "length", "level"):
            np.testing.assert_array_equal(np.asarray(getattr(state, name)), getattr(expected, name), err_msg=name)
        assert float(timestep.reward) == float(timesteps.reward[t])
        np.testing.assert_array_equal(np.asarray(timestep.observation), np.asarray(timesteps.observation[t]))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"obstacle_density": 0.26}, "obstacle_density"),
        ({"obstacle_density": -0.01}, "obstacle_density"),
        ({"obstacle_density": float("nan")}, "obstacle_density"),
        ({"levels": -1}, "levels"),
        ({"levels": 2.5}, "levels"),
        ({"level_seed_offset": -1}, "level_seed_offset"),
        ({"levels": 10, "level_seed_offset": 2**31 - 5}, "levels"),
        ({"levels": 100, "held_out_level_offset": 50}, "held_out_level_offset"),
        ({"levels": 100, "level_seed_offset": 50, "held_out_level_offset": 149}, "held_out_level_offset"),
        ({"obstacle_density": 0.1, "held_out_level_offset": 2**31}, "held_out_level_offset"),
    ],
)
def test_bad_level_parameters_name_the_field(kwargs: dict, field: str) -> None:
    """Each bad level parameter is one ConfigError line naming it."""
    with pytest.raises(snake.ConfigError) as error:
        snake.to_config(**kwargs)
    assert error.value.field == field
    assert str(error.value).startswith(f"{field}: ") and "\n" not in str(error.value)


def test_held_out_levels_beside_the_training_levels_are_accepted() -> None:
    """Held-out levels just after or just before the training levels do not overlap them."""
    assert snake.SnakeConfig(levels=100, level_seed_offset=50, held_out_level_offset=150).has_levels
    snake.SnakeConfig(levels=100, level_seed_offset=50, held_out_level_offset=49)
    with pytest.raises(snake.ConfigError, match="held_out_level_offset"):
        snake.SnakeConfig(levels=100, level_seed_offset=50, held_out_level_offset=50)


def test_a_density_just_below_the_maximum_makes_levels() -> None:
    """Every density the config accepts makes levels: just below 0.25 nearly every lattice
    cell is a wall (4 * density rounds to 2**32 out of 2**32)."""
    config = snake.SnakeConfig(rows=6, cols=6, obstacle_density=0.25 - 1e-12)
    walls = np.asarray(snake.level_walls(config, jnp.uint32(3)))
    assert walls.sum() == 9
    state = snake.reset(config, jax.random.key(0))
    assert (np.asarray(state.body) == snake.WALL).sum() == 9


def test_the_world_without_levels_is_unchanged() -> None:
    """The defaults (and levels = 0 with no obstacles) have no levels: no level seed in the
    state, before or after resets, no wall anywhere, three grid channels."""
    for config in (snake.SnakeConfig(), snake.SnakeConfig(levels=0, obstacle_density=0.0), CONFIGS[0]):
        assert not config.has_levels
    config = CONFIGS[0]
    assert config.observation_shape == (3, 4, 4)
    actions = jnp.asarray(np.random.default_rng(0).integers(0, 3, STEPS), jnp.int32)
    states, timesteps = rollout(config, jax.random.key(0), actions)
    assert states.level is None and np.asarray(timesteps.terminated).any()
    assert (np.asarray(states.body) >= 0).all()
    assert snake.reset_batch(config, jax.random.key(1), 3).level is None
    with pytest.raises(snake.ConfigError, match=r"^levels: this world has no levels"):
        snake.reset_to_level(config, 0, jax.random.key(0))


# ------------------------------------------------------------------- reference policies


def test_greedy_policy_never_walks_into_a_wall() -> None:
    """The food is straight ahead behind a wall: greedy turns (the same board without the wall: it goes straight)."""
    config = snake.SnakeConfig(rows=5, cols=5, initial_length=2, obstacle_density=0.1)
    walled = board_state(config, [(2, 1), (2, 0)], snake.RIGHT, (2, 4), walls=[(2, 2)])
    open_board = board_state(config, [(2, 1), (2, 0)], snake.RIGHT, (2, 4), walls=[])
    act = jax.jit(lambda state, key: play_module.greedy_action(config, state, key))
    for seed in range(20):
        key = jax.random.key(seed)
        assert int(act(walled, key)) in (snake.TURN_LEFT, snake.TURN_RIGHT)
        assert int(act(open_board, key)) == snake.STRAIGHT


@pytest.mark.slow
def test_play_on_boards_with_walls_keeps_them_in_the_first_episode() -> None:
    """Batched play on training levels: episodes end, and the first episode's states keep
    their level's walls throughout."""
    config = snake.SnakeConfig(rows=6, cols=6, obstacle_density=0.2, levels=3, level_seed_offset=7)
    summary, episode = play_module.play(config, "greedy", 0, 16, 200)
    assert summary.episodes > 0 and sum(summary.causes.values()) == summary.episodes
    levels = {int(state.level) for state in episode}
    assert len(levels) == 1 and levels <= {7, 8, 9}
    walls = {np.asarray(state.body < 0).tobytes() for state in episode}
    assert len(walls) == 1
    level_mask = np.asarray(snake.level_walls(config, np.uint32(levels.pop())))
    np.testing.assert_array_equal(np.asarray(episode[0].body) < 0, level_mask)


# ------------------------------------------------------------------------- regspeed play


def board_lines(output: str, rows: int, cols: int) -> list[str]:
    """The lines of the text boards ``--show`` printed that are rows inside a board."""
    return [line for line in output.splitlines() if len(line) == cols + 2 and line[0] == line[-1] == "#" != line[1]]


@pytest.mark.slow
def test_play_shows_and_draws_the_walls(tmp_path: Path) -> None:
    """``regspeed play --obstacle-density --levels --level-seed-offset``: the title names the
    levels, ``--show`` draws walls inside the board, ``--gif`` paints them."""
    gif = tmp_path / "walls.gif"
    flags = ["--rows", "6", "--cols", "6", "--obstacle-density", "0.25", "--levels", "3", "--level-seed-offset", "7"]
    result = runner.invoke(app, ["play", *flags, "--envs", "4", "--steps", "40", "--show", "--gif", str(gif)])
    assert result.exit_code == 0, result.output
    assert "obstacle density 0.25, 3 levels (seeds 7..9)" in " ".join(result.output.split())
    inside = board_lines(result.output, 6, 6)
    assert inside and any("#" in line[1:-1] for line in inside)
    with Image.open(gif) as image:
        first = np.asarray(image.convert("RGB"))
    centre = first[16 * 2 - 8 :: 16, 16 * 2 - 8 :: 16][:6, :6]  # the cells inside the border
    assert (centre == render.WALL).all(-1).sum() >= 4


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--obstacle-density", "0.3"], "obstacle_density: must be in [0, 0.25]"),
        (["--obstacle-density", "-0.1"], "obstacle_density: must be in [0, 0.25]"),
        (["--obstacle-density", "nan"], "obstacle_density: must be a finite number (got nan)"),
        (["--levels", "-1"], "levels: must be an integer from 0 to 2147483647 (got -1)"),
        (["--level-seed-offset", "-1"], "level_seed_offset: must be an integer from 0 to 2147483647 (got -1)"),
        (["--levels", "10", "--level-seed-offset", "2147483640"], "levels: level_seed_offset + levels must be at most"),
    ],
)
def test_play_refuses_bad_level_options_in_one_line(tmp_path: Path, flags: list[str], message: str) -> None:
    """A bad level option: exit code 2, one line naming it, no traceback, no GIF written."""
    gif = tmp_path / "episode.gif"
    result = runner.invoke(app, ["play", *flags, "--gif", str(gif)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {message}") and len(result.output.strip().splitlines()) == 1
    assert not gif.exists()


def test_play_chooses_held_out_levels_clear_of_the_levels_it_plays() -> None:
    """Play never plays held-out levels, so its held-out offset never overlaps the training
    levels, wherever they are (and bad values are left for SnakeConfig to name)."""
    default = snake.SnakeConfig.held_out_level_offset
    cases = ((0, 0), (0, 5), (default - 10, 20), (default, 1), (snake.LEVEL_SEEDS - 3, 3), (1, snake.LEVEL_SEEDS - 1))
    for offset, levels in (*cases, (5, -1)):
        held_out = held_out_offset_clear_of(offset, levels)
        if levels >= 0:
            config = snake.SnakeConfig(levels=levels, level_seed_offset=offset, held_out_level_offset=held_out)
            assert not config.level_seed_offset <= held_out < config.level_seed_offset + config.levels
    assert held_out_offset_clear_of(0, 5) == default
    assert held_out_offset_clear_of(default - 10, 20) == default + 10
    assert held_out_offset_clear_of(default, 1) == default + 1
    assert held_out_offset_clear_of(1, snake.LEVEL_SEEDS - 1) == 0
