"""An independent, plain-Python model of the Snake rules, to check the JAX world against.

It keeps the body as a list of cells (head first), the way the rules are usually stated,
and shares no code with ``regspeed.envs.snake`` beyond the public constants.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from regspeed.envs.snake import Cause, SnakeConfig

MOVES = {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)}


@dataclasses.dataclass
class Snapshot:
    """One Snake state in list form."""

    body: list[tuple[int, int]]  # head first
    heading: int
    food: tuple[int, int]
    steps: int
    steps_since_food: int


@dataclasses.dataclass
class Outcome:
    """What the rules say one step does."""

    heading: int
    target: tuple[int, int]
    ate: bool
    terminated: bool
    truncated: bool
    cause: Cause
    reward: float
    body: list[tuple[int, int]]  # the body after the step (unchanged on death)


def snapshot(config: SnakeConfig, state) -> Snapshot:
    """Read an unbatched JAX state into list form, checking the lifetimes are well formed."""
    lifetimes = np.asarray(state.body).reshape(config.rows, config.cols)
    cells = np.argwhere(lifetimes > 0)
    values = lifetimes[cells[:, 0], cells[:, 1]]
    assert sorted(values.tolist()) == list(range(1, int(state.length) + 1)), "lifetimes must be 1..length, once each"
    order = np.argsort(-values)
    body = [tuple(int(v) for v in cells[i]) for i in order]
    return Snapshot(
        body=body,
        heading=int(state.heading),
        food=(int(state.food[0]), int(state.food[1])),
        steps=int(state.steps),
        steps_since_food=int(state.steps_since_food),
    )


def turn(config: SnakeConfig, heading: int, action: int) -> int:
    """The heading after an action, by the rules."""
    if config.action_mode == "relative":
        return {0: heading, 1: (heading - 1) % 4, 2: (heading + 1) % 4}[action]
    return heading if action == (heading + 2) % 4 else action


def step(config: SnakeConfig, before: Snapshot, action: int) -> Outcome:
    """Apply the rules to one state and action (food placement is not modelled)."""
    heading = turn(config, before.heading, action)
    dr, dc = MOVES[heading]
    head = before.body[0]
    target = (head[0] + dr, head[1] + dc)
    in_bounds = 0 <= target[0] < config.rows and 0 <= target[1] < config.cols
    ate = in_bounds and target == before.food
    # The tail moves away this step unless the snake eats.
    blocking = before.body if ate else before.body[:-1]
    hits_body = in_bounds and target in blocking
    died = not in_bounds or hits_body
    if died:
        body = list(before.body)
        ate = False
    elif ate:
        body = [target, *before.body]
    else:
        body = [target, *before.body[:-1]]
    won = not died and len(body) == config.rows * config.cols
    steps = before.steps + 1
    since_food = 0 if ate else before.steps_since_food + 1
    limit = config.starvation_limit or config.rows * config.cols
    starved = since_food >= limit
    timed_out = config.time_limit is not None and steps >= config.time_limit
    terminated = died or won
    truncated = not terminated and (starved or timed_out)
    if not in_bounds:
        cause = Cause.WALL
    elif hits_body:
        cause = Cause.BODY
    elif won:
        cause = Cause.WON
    elif truncated:
        cause = Cause.STARVED if starved else Cause.TIME_LIMIT
    else:
        cause = Cause.RUNNING
    reward = config.reward_step + config.reward_food * ate + config.reward_death * died + config.reward_win * won
    return Outcome(heading, target, ate, terminated, truncated, cause, float(reward), body)


def is_fresh_start(config: SnakeConfig, start: Snapshot) -> bool:
    """A valid reset: straight body of the initial length behind the head, room ahead."""
    body = start.body
    if len(body) != config.initial_length or start.steps != 0 or start.steps_since_food != 0:
        return False
    dr, dc = MOVES[start.heading]
    head = body[0]
    straight = all(cell == (head[0] - i * dr, head[1] - i * dc) for i, cell in enumerate(body))
    ahead = (head[0] + dr, head[1] + dc)
    room = 0 <= ahead[0] < config.rows and 0 <= ahead[1] < config.cols
    return straight and room and start.food not in body


def is_connected(body: list[tuple[int, int]]) -> bool:
    """Each body cell is 4-adjacent to the next, head to tail."""
    return all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in itertools.pairwise(body))
