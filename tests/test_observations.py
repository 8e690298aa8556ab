"""Each observation against a direct computation from the body list."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np
import pytest
import reference_snake as ref
from conftest import CONFIGS, STEPS, index, rollout
from hypothesis import given
from hypothesis import strategies as st

from regspeed.envs import snake


@functools.partial(jax.jit, static_argnums=0)
def observe_batch(config: snake.SnakeConfig, states: snake.SnakeState) -> jax.Array:
    return jax.vmap(lambda state: snake.observe(config, state))(states)


def blocked(config: snake.SnakeConfig, body: list[tuple[int, int]], cell: tuple[int, int]) -> bool:
    """Would moving into ``cell`` kill the snake? (The tail moves away.)"""
    inside = 0 <= cell[0] < config.rows and 0 <= cell[1] < config.cols
    return not inside or cell in body[:-1]


def expected_features(config: snake.SnakeConfig, s: ref.Snapshot) -> np.ndarray:
    head = s.body[0]
    dirs = [s.heading, (s.heading - 1) % 4, (s.heading + 1) % 4]  # straight, left, right
    danger = [blocked(config, s.body, (head[0] + ref.MOVES[d][0], head[1] + ref.MOVES[d][1])) for d in dirs]
    heading = [s.heading == h for h in range(4)]
    food = [s.food[1] < head[1], s.food[1] > head[1], s.food[0] < head[0], s.food[0] > head[0]]
    return np.asarray(danger + heading + food, np.float32)


def expected_window(config: snake.SnakeConfig, s: ref.Snapshot) -> np.ndarray:
    k = config.window_size
    half = k // 2
    head = s.body[0]
    forward, right = ref.MOVES[s.heading], ref.MOVES[(s.heading + 1) % 4]
    wall, body, food = np.zeros((k, k)), np.zeros((k, k)), np.zeros((k, k))
    length = len(s.body)
    for i in range(k):
        for j in range(k):
            ahead, side = half - i, j - half
            cell = (head[0] + ahead * forward[0] + side * right[0], head[1] + ahead * forward[1] + side * right[1])
            if not (0 <= cell[0] < config.rows and 0 <= cell[1] < config.cols):
                wall[i, j] = 1
            elif cell in s.body:
                body[i, j] = (length - s.body.index(cell)) / length
            if cell == s.food:
                food[i, j] = 1
    to_food = (s.food[0] - head[0], s.food[1] - head[1])
    along = to_food[0] * forward[0] + to_food[1] * forward[1]
    across = to_food[0] * right[0] + to_food[1] * right[1]
    direction = [along > 0, along < 0, across < 0, across > 0]
    heading = [s.heading == h for h in range(4)]
    return np.concatenate([wall.ravel(), body.ravel(), food.ravel(), direction, heading]).astype(np.float32)


def expected_grid(config: snake.SnakeConfig, s: ref.Snapshot) -> np.ndarray:
    grid = np.zeros((3, config.rows, config.cols), np.float32)
    grid[0][s.body[0]] = 1
    for age, cell in enumerate(s.body):
        grid[1][cell] = (len(s.body) - age) / len(s.body)
    grid[2][s.food] = 1
    return grid


EXPECTED = {"grid": expected_grid, "features": expected_features, "window": expected_window}


@pytest.mark.slow
@given(st.integers(0, len(CONFIGS) - 1), st.integers(0, 2**31 - 1), st.sampled_from(sorted(EXPECTED)))
def test_observations_match_their_definitions(config_index: int, seed: int, kind: str) -> None:
    """Grid channels, the 11 features and the rotated window, at every state of a random
    rollout, equal what their definitions say."""
    base = CONFIGS[config_index]
    actions = jax.random.randint(jax.random.key(seed), (STEPS,), 0, base.num_actions)
    states, _ = rollout(base, jax.random.key(seed), actions)
    config = dataclasses.replace(base, observation=kind)
    batch = np.asarray(observe_batch(config, states))
    for t in range(0, STEPS + 1, 4):
        s = ref.snapshot(config, index(states, t))
        np.testing.assert_allclose(batch[t], EXPECTED[kind](config, s), rtol=1e-6)
        assert batch[t].shape == config.observation_shape
        assert batch[t].dtype == np.float32 and batch[t].min() >= 0 and batch[t].max() <= 1
