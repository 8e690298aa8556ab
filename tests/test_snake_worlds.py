"""Worlds whose walls change: a smaller active board and obstacles, phase by phase
(``envs/snake.py``'s ``World``, ``envs/schedule.py``'s ``board`` and ``obstacles``)."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections import deque
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny
from conftest import leaves_equal

from regspeed.envs import schedule, snake
from regspeed.errors import ConfigError, ConfigProblemsError
from regspeed.learn import checkpoint, common, registry
from regspeed.learn import driver as training

WALLED = {  # a world whose board and obstacles change every 2 updates (a tiny PPO update is 128 env steps)
    "snake-ppo": {"phase_steps": 2 * 128, "changes": ["board", "obstacles"], "seed": 3},
    "snake-dqn": {"phase_steps": 2 * 8, "changes": ["board", "obstacles"], "seed": 3},
}


def rollout(config: snake.SnakeConfig, world: snake.World | None, seed: int = 7, steps: int = 60, batch: int = 16):
    """``steps`` random auto-reset steps of ``batch`` episodes started in ``world``: the states
    before each step (their keys as data) and the time steps."""
    state = snake.reset_batch(config, jax.random.key(seed), batch, world)
    actions = jax.random.randint(jax.random.key(seed + 1), (steps, batch), 0, config.num_actions)

    def body(s: snake.SnakeState, a: jax.Array) -> tuple[snake.SnakeState, tuple]:
        following, ts = jax.vmap(lambda s, a: snake.autoreset_step(config, s, a, world=world))(s, a)
        return following, (s.replace(key=jax.random.key_data(s.key)), ts)

    return jax.jit(lambda s: jax.lax.scan(body, s, actions)[1])(state)


# ------------------------------------------------------------- the stationary world

PINNED = [  # sha256 prefixes of rollouts recorded before changing walls existed (commit ee494e8)
    ({}, "289372af2938f41d"),
    ({"observation": "features", "rows": 7, "cols": 9}, "e002d88a5da9b75a"),
    ({"observation": "window", "window_size": 5, "action_mode": "absolute"}, "e111c8a8f15a4c0a"),
    ({"observation": "grid", "levels": 3, "obstacle_density": 0.1}, "9e64be16519bde61"),
    ({"observation": "window", "obstacle_density": 0.2, "time_limit": 40}, "31f11c607dfba2f5"),
]


@pytest.mark.parametrize(("fields", "expected"), PINNED)
def test_the_worlds_without_changing_walls_play_as_before(fields: dict, expected: str) -> None:
    config = snake.SnakeConfig(**fields)
    state = snake.reset_batch(config, jax.random.key(7), 16)
    actions = jax.random.randint(jax.random.key(8), (60, 16), 0, config.num_actions)

    def body(s: snake.SnakeState, a: jax.Array) -> tuple[snake.SnakeState, snake.TimeStep]:
        return jax.vmap(lambda s, a: snake.autoreset_step(config, s, a))(s, a)

    state, ts = jax.jit(lambda s: jax.lax.scan(body, s, actions))(state)
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves((state.body, state.head, state.food, state.length, ts)):
        digest.update(np.asarray(leaf).tobytes())
    assert digest.hexdigest()[:16] == expected


@pytest.mark.parametrize("observation", ["features", "window", "grid"])
def test_a_world_without_walls_plays_as_the_stationary_world(observation: str) -> None:
    """The same draws give the same episodes bit for bit; the grid only adds its (empty) walls channel."""
    config = snake.SnakeConfig(rows=7, cols=9, observation=observation, window_size=5)
    walled = dataclasses.replace(config, changing_walls=True)
    open_world = snake.world_at(snake.worlds(walled, np.zeros((1, walled.num_cells), bool)), 0)
    still, moving = rollout(config, None), rollout(walled, open_world)
    for path, leaf in jax.tree_util.tree_leaves_with_path(still):
        other = dict(jax.tree_util.tree_leaves_with_path(moving))[path]
        if observation == "grid" and leaf.ndim == 5:  # [steps, batch, channels, rows, cols]
            np.testing.assert_array_equal(other[:, :, :3], leaf)
            assert not other[:, :, 3].any()
        else:
            np.testing.assert_array_equal(other, leaf)
    assert walled.observation_shape == ((4, 7, 9) if observation == "grid" else config.observation_shape)


# ------------------------------------------------------------------ walls in play


def _area_and_obstacles(config: snake.SnakeConfig) -> np.ndarray:
    walls = snake.area_walls(config, 1, 2, 5, 6)
    return snake.pillar_walls(config, walls, 0.2, np.random.default_rng(4))


@pytest.mark.parametrize("observation", ["features", "window", "grid"])
def test_episodes_stay_inside_the_active_area_and_see_its_walls(observation: str) -> None:
    config = snake.SnakeConfig(rows=8, cols=9, observation=observation, window_size=5, changing_walls=True)
    walls = _area_and_obstacles(config)
    world = snake.world_at(snake.worlds(config, walls[None]), 0)
    states, ts = rollout(config, world, steps=150, batch=32)
    body = np.asarray(states.body).reshape(150, 32, -1)
    np.testing.assert_array_equal(body == snake.WALL, np.broadcast_to(walls, body.shape))  # walls never move
    food = np.asarray(states.food)[..., 0] * config.cols + np.asarray(states.food)[..., 1]
    head = np.asarray(states.head)[..., 0] * config.cols + np.asarray(states.head)[..., 1]
    assert not walls[food].any() and not walls[head].any()  # food never spawns outside, the snake never enters
    assert np.asarray(ts.done).sum() > 20 and (np.asarray(ts.cause) == snake.Cause.WALL).any()
    one = jax.tree.map(lambda x: x[5, 0], states)
    seen = np.asarray(snake.observe(config, one))
    if observation == "grid":
        np.testing.assert_array_equal(seen[3].ravel(), walls)
    elif observation == "window":  # the wall channel: the board's edge and every wall cell
        cells = np.asarray(one.head) + snake._window_offsets(5)[int(one.heading)]
        inside = (cells >= 0).all(-1) & (cells[:, 0] < config.rows) & (cells[:, 1] < config.cols)
        safe = np.clip(cells, 0, [config.rows - 1, config.cols - 1])
        expected = ~inside | walls[safe[:, 0] * config.cols + safe[:, 1]]
        np.testing.assert_array_equal(seen[:25], expected)
    else:  # danger straight / left / right includes the walls
        ahead = np.asarray(one.head) + snake.DELTAS[[int(one.heading), (int(one.heading) + 3) % 4,
                                                     (int(one.heading) + 1) % 4]]  # fmt: skip
        blocked = np.asarray(snake.is_blocked(config, one.body, jnp.asarray(ahead)))
        np.testing.assert_array_equal(seen[:3], blocked)


def test_every_start_fits_and_covers_every_fitting_place() -> None:
    config = snake.SnakeConfig(rows=8, cols=9, changing_walls=True)
    walls = _area_and_obstacles(config)
    world = snake.world_at(snake.worlds(config, walls[None]), 0)
    states = snake.reset_batch(config, jax.random.key(0), 4000, world)
    body = np.asarray(states.body).reshape(4000, -1)
    assert ((body > 0) & walls).sum() == 0 and ((body > 0).sum(1) == config.initial_length).all()
    ahead = np.asarray(states.head) + snake.DELTAS[np.asarray(states.heading)]
    assert not walls[ahead[:, 0] * config.cols + ahead[:, 1]].any()  # room for a step ahead
    starts = {(int(h), *map(int, c)) for h, c in zip(states.heading, states.head, strict=True)}
    assert len(starts) == int(np.asarray(world.counts).sum())  # every fitting start is drawn


@pytest.mark.parametrize(("rows", "cols", "length"), [(8, 9, 3), (5, 4, 3), (12, 7, 5)])
def test_the_fresh_food_rule_among_walls_matches_the_general_sampler(rows: int, cols: int, length: int) -> None:
    """The O(length) food draw of a fresh episode among walls picks the cell the general
    k-th-free-cell sampler picks, for thousands of random starts in several worlds."""
    config = snake.SnakeConfig(rows=rows, cols=cols, initial_length=length, changing_walls=True)
    both = schedule.Schedule(100, ("board", "obstacles"), 5, obstacle_density=0.25)
    found = snake.worlds(config, schedule.walls(both, config, 6))
    words = jax.random.bits(jax.random.key(0), (2000, 3), jnp.uint32)
    for index in range(6):
        world = snake.world_at(found, index)
        starts = jax.vmap(lambda w, world=world: snake._world_start(config, world, w))(words)
        general = jax.vmap(lambda body, w: snake._sample_free_cell(config, body, w))(starts.body, words[:, 2])
        np.testing.assert_array_equal(np.asarray(general), np.asarray(starts.food))


def test_a_running_episode_finishes_in_its_walls_and_the_next_starts_in_the_new_ones() -> None:
    config = snake.SnakeConfig(rows=8, cols=9, changing_walls=True)
    old = snake.area_walls(config, 0, 0, 8, 9)
    new = _area_and_obstacles(config)
    found = snake.worlds(config, np.stack([old, new]))
    state = snake.reset(config, jax.random.key(2), snake.world_at(found, 0))
    step = jax.jit(lambda s, a: snake.autoreset_step(config, s, a, world=snake.world_at(found, 1)))
    ended = False
    for action in np.random.default_rng(0).integers(0, 3, 300):
        walls = np.asarray(state.body) == snake.WALL
        state, ts = step(state, action)
        if ended:
            np.testing.assert_array_equal(np.asarray(state.body) == snake.WALL, new)
        else:
            np.testing.assert_array_equal(walls, old)
            ended = bool(ts.done)
    assert ended


def test_a_world_needs_changing_walls() -> None:
    config = snake.SnakeConfig()
    world = snake.world_at(snake.worlds(config, np.zeros((1, config.num_cells), bool)), 0)
    with pytest.raises(ConfigError, match="changing_walls"):
        snake.reset(config, jax.random.key(0), world)
    with pytest.raises(ConfigError, match="changing_walls: a world with levels has its own walls"):
        snake.SnakeConfig(levels=3, changing_walls=True)


# ------------------------------------------------------------------ phases' walls


def _connected(free: np.ndarray) -> bool:
    """Whether the free cells of a board (bool[rows, cols]) are one 4-connected region."""
    cells = list(zip(*np.nonzero(free), strict=True))
    seen, queue = {cells[0]}, deque([cells[0]])
    while queue:
        r, c = queue.popleft()
        for dr, dc in snake.DELTAS:
            nxt = (r + dr, c + dc)
            if 0 <= nxt[0] < free.shape[0] and 0 <= nxt[1] < free.shape[1] and free[nxt] and nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return len(seen) == len(cells)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_each_phase_has_its_own_area_and_obstacles(seed: int) -> None:
    env = snake.SnakeConfig(rows=9, cols=12, initial_length=4)
    both = schedule.Schedule(100, ("board", "obstacles"), seed, min_side=5, obstacle_density=0.15)
    walls = schedule.walls(both, env, 12).reshape(12, 9, 12)
    assert not walls[0].any()
    areas = []
    for layout in walls[1:]:
        inside = np.argwhere(~snake.area_walls(env, 0, 0, 9, 12).reshape(9, 12) & ~layout)
        rows, cols = np.ptp(inside[:, 0]) + 1, np.ptp(inside[:, 1]) + 1
        assert 5 <= rows <= 9 and 5 <= cols <= 12 and _connected(~layout)
        obstacles = np.argwhere(layout[inside[:, 0].min() : inside[:, 0].max() + 1,
                                       inside[:, 1].min() : inside[:, 1].max() + 1])  # fmt: skip
        if len(obstacles) > 1:  # on one lattice: rows and columns of one parity each, never touching
            assert len({r % 2 for r, _ in obstacles}) == 1 and len({c % 2 for _, c in obstacles}) == 1
        areas.append((inside.min(0).tolist(), rows, cols))
    assert all(a != b for a, b in itertools.pairwise(areas))  # the area changes at every boundary
    np.testing.assert_array_equal(schedule.walls(both, env, 5), walls[:5].reshape(5, -1))  # whatever the phases
    assert snake.worlds(env, walls.reshape(12, -1)).counts.min() >= 1
    board_only = schedule.walls(schedule.Schedule(100, ("board",), seed, min_side=5), env, 12)
    obstacles_only = schedule.walls(schedule.Schedule(100, ("obstacles",), seed), env, 12)
    assert (board_only <= walls.reshape(12, -1)).all()  # obstacles are added to the same areas
    assert (obstacles_only[1:].sum(1) > 0).any() and not obstacles_only[1:].all(1).any()


@pytest.mark.parametrize(
    ("fields", "env", "problem"),
    [
        ({"min_side": 11}, {}, "min_side: must be at most the configured board's rows and cols (10 x 10)"),
        ({"min_side": 4}, {"initial_length": 5}, "min_side: must be at least initial_length + 1 = 6"),
        ({"min_side": 6}, {"rows": 6, "cols": 6}, "min_side: must be below rows and cols (6)"),
        ({}, {"rows": 4, "cols": 4}, "min_side: must be below rows and cols (4) for the board to change (got the"),
        ({}, {"levels": 2}, "changes: board need a world without levels"),
    ],
)
def test_a_board_the_world_cannot_take_names_the_field(fields: dict, env: dict, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        schedule.check_world(schedule.Schedule(100, ("board",), **fields), snake.SnakeConfig(**env))
    assert str(caught.value).startswith(problem)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"changes": ("board",), "min_side": 3}, "min_side: must be an integer >= 4 (the smallest board), or 0"),
        ({"changes": ("obstacles",), "obstacle_density": 0.3}, "obstacle_density: must be in (0, 0.25]"),
        ({"changes": ("obstacles",), "obstacle_density": 0.0}, "obstacle_density: must be in (0, 0.25]"),
        ({"changes": ("actions",), "min_side": 6}, 'min_side: is a setting of the "board" change'),
        ({"changes": ("board",), "obstacle_density": 0.2}, 'obstacle_density: is a setting of the "obstacles"'),
    ],
)
def test_a_bad_wall_setting_is_one_clear_problem(fields: dict, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        schedule.Schedule(100, **fields)
    assert str(caught.value).startswith(problem)


def test_the_least_side_is_what_the_snake_needs_unless_given() -> None:
    board = schedule.Schedule(100, ("board",))
    assert schedule.least_side(board, snake.SnakeConfig(initial_length=5)) == 6
    assert schedule.least_side(board, snake.SnakeConfig(initial_length=2)) == 4
    assert schedule.least_side(schedule.Schedule(100, ("board",), min_side=7), snake.SnakeConfig()) == 7


def test_a_schedule_table_holds_only_the_settings_of_its_changes() -> None:
    assert schedule.table(schedule.Schedule(100, ("actions",))) == {"phase_steps": 100, "changes": ("actions",),
                                                                    "seed": 0}  # fmt: skip
    assert schedule.table(schedule.Schedule(100, ("board",), min_side=5))["min_side"] == 5


# ------------------------------------------------------------------ the agents in it

AGENTS = ["snake-ppo", "snake-dqn"]


@pytest.mark.parametrize("name", AGENTS)
def test_an_agent_gets_changing_walls_from_its_schedule_and_its_tables_round_trip(name: str) -> None:
    learner = registry.get(name)
    setup = tiny.setup(name, schedule=WALLED[name])
    assert setup.config.env.changing_walls and not tiny.setup(name).config.env.changing_walls
    tables = learner.tables(setup)
    assert "changing_walls" not in tables["env"] and tables["schedule"]["min_side"] == 0
    budget = setup.config.total_updates * setup.config.steps_per_update
    request = tiny.Request(budget, setup.config.regularizer, **tiny.EVALUATION)
    assert learner.build(tables, request).config == setup.config
    with pytest.raises(ConfigProblemsError) as caught:
        tiny.setup(name, env={"changing_walls": True})
    assert caught.value.problems[0][0] == "env.changing_walls"
    with pytest.raises(ConfigProblemsError) as caught:
        tiny.setup(name, env={"levels": 2}, schedule=WALLED[name])
    assert caught.value.problems[0][0] == "schedule.changes"


@pytest.mark.slow
@pytest.mark.parametrize("name", AGENTS)
def test_the_first_phase_is_the_stationary_world_and_the_walls_switch_at_the_boundary(name: str) -> None:
    """Two updates in phase 0 equal the stationary world's bit for bit (and the evaluation after
    them); the perspective of each update gives its phase's walls; the next updates differ."""
    learner, still, fixed = tiny.start(name, [1, 2], [1e-3, 0.0])
    _, changing, moving = tiny.start(name, [1, 2], [1e-3, 0.0], schedule=WALLED[name])
    fixed, fixed_metrics = learner.trainer.advance_batch(still.config, fixed, 2)
    moving, moving_metrics = learner.trainer.advance_batch(changing.config, moving, 2)
    assert leaves_equal(fixed, moving)
    for metric, values in fixed_metrics.items():
        np.testing.assert_array_equal(moving_metrics[metric], values)
    for metric, values in learner.trainer.evaluate_batch(still.config, fixed).items():
        np.testing.assert_array_equal(learner.trainer.evaluate_batch(changing.config, moving)[metric], values)
    config = changing.config
    walls = schedule.walls(config.schedule, config.env, -(-config.total_updates // 2))
    for update, phase in ((0, 0), (1, 0), (2, 1), (3, 1), (4, 2)):
        np.testing.assert_array_equal(common.perspective(config, update).world.walls, walls[phase])
    assert common.perspective(still.config, 2).world is None
    fixed, _ = learner.trainer.advance_batch(still.config, fixed, 2)
    moving, _ = learner.trainer.advance_batch(changing.config, moving, 2)
    assert not leaves_equal(fixed.params, moving.params)
    episodes = np.asarray(moving.env_state.body).reshape(-1, config.env.num_cells)
    started_here = np.asarray(moving.env_state.steps).ravel() < 2 * config.rollout_steps  # began in phase 1
    assert started_here.any() and ((episodes == snake.WALL)[started_here] == walls[1]).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", AGENTS)
def test_a_world_of_changing_walls_resumes_bit_identical(name: str, tmp_path: Path) -> None:
    """Killed mid-phase and resumed from its checkpoint, a run ends as if uninterrupted."""
    options = {"schedule": WALLED[name]}
    learner, setup, carry = tiny.start(name, [5, 6], [1e-3, 0.0], **options)
    total = learner.total_updates(setup)
    straight, straight_history = training.train(learner.trainer, setup.config, carry, total, 3, eval_every=2)
    first, history = training.train(learner.trainer, setup.config, tiny.start(name, [5, 6], [1e-3, 0.0], **options)[2],
                                    3, 3, eval_every=2)  # fmt: skip
    template = tiny.start(name, [0, 0], [0.0, 0.0], **options)[2]
    restored = checkpoint.load(checkpoint.save(tmp_path / "carry.npz", first), template)
    resumed, history = training.train(learner.trainer, setup.config, restored, total, 3, eval_every=2, history=history)
    assert leaves_equal(resumed, straight)
    for metric, values in straight_history.updates.items():
        np.testing.assert_array_equal(history.updates[metric], values)
