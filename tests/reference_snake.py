"""An independent, plain-Python model of the Snake rules, to check the JAX world against.

It keeps the body as a list of cells (head first), the way the rules are usually stated,
and the walls inside the board (a world with levels) as a set of cells, and shares no code
with ``regspeed.envs.snake`` beyond the public constants (and :func:`level_food`, which
draws from the level's documented random words).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from regspeed.envs import snake
from regspeed.envs.snake import WALL, Cause, SnakeConfig

MOVES = {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)}
FOOD_WORD = 1 << 20  # the n-th food of a level's episode is drawn from the level's word FOOD_WORD + n

Cell = tuple[int, int]


@dataclasses.dataclass
class Snapshot:
    """One Snake state in list form."""

    body: list[tuple[int, int]]  # head first
    heading: int
    food: tuple[int, int]
    steps: int
    steps_since_food: int
    walls: frozenset[Cell] = frozenset()  # walls inside the board (a world with levels)
    level: int | None = None  # the level seed (None without levels)


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
    """Read an unbatched JAX state into list form, checking the lifetimes are well formed
    (walls, ``WALL``, only in a world with levels; no other negative value)."""
    lifetimes = np.asarray(state.body).reshape(config.rows, config.cols)
    assert ((lifetimes >= 0) | (lifetimes == WALL)).all(), "a cell is neither free, body nor wall"
    walls = frozenset((int(r), int(c)) for r, c in np.argwhere(lifetimes == WALL))
    assert config.has_levels or not walls, "walls in a world without levels"
    assert (state.level is None) == (not config.has_levels), "a level seed exactly in a world with levels"
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
        walls=walls,
        level=None if state.level is None else int(state.level),
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
    hits_wall = not in_bounds or target in before.walls
    ate = not hits_wall and target == before.food
    # The tail moves away this step unless the snake eats.
    blocking = before.body if ate else before.body[:-1]
    hits_body = not hits_wall and target in blocking
    died = hits_wall or hits_body
    if died:
        body = list(before.body)
        ate = False
    elif ate:
        body = [target, *before.body]
    else:
        body = [target, *before.body[:-1]]
    won = not died and len(body) == config.rows * config.cols - len(before.walls)  # every free cell filled
    steps = before.steps + 1
    since_food = 0 if ate else before.steps_since_food + 1
    limit = config.starvation_limit or config.rows * config.cols
    starved = since_food >= limit
    timed_out = config.time_limit is not None and steps >= config.time_limit
    terminated = died or won
    truncated = not terminated and (starved or timed_out)
    if hits_wall:
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
    """A valid reset: straight body of the initial length behind the head, room ahead (on the
    board, not a wall), food on a free cell."""
    body = start.body
    if len(body) != config.initial_length or start.steps != 0 or start.steps_since_food != 0:
        return False
    dr, dc = MOVES[start.heading]
    head = body[0]
    straight = all(cell == (head[0] - i * dr, head[1] - i * dc) for i, cell in enumerate(body))
    ahead = (head[0] + dr, head[1] + dc)
    room = 0 <= ahead[0] < config.rows and 0 <= ahead[1] < config.cols and ahead not in start.walls
    clear = not start.walls & {*body, start.food}
    return straight and room and clear and start.food not in body


def is_connected(body: list[tuple[int, int]]) -> bool:
    """Each body cell is 4-adjacent to the next, head to tail."""
    return all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in itertools.pairwise(body))


def free_cells(config: SnakeConfig, snap: Snapshot) -> list[Cell]:
    """The cells neither body nor wall, in row-major order."""
    taken = {*snap.body, *snap.walls}
    return [(r, c) for r in range(config.rows) for c in range(config.cols) if (r, c) not in taken]


def level_food(config: SnakeConfig, snap: Snapshot, eaten: int) -> Cell:
    """Where a level puts its food after ``eaten`` foods of the episode: the k-th free cell in
    row-major order, k = the level's word ``FOOD_WORD + eaten`` modulo the number of free cells."""
    word = int(snake.level_words(np.uint32(snap.level), FOOD_WORD + eaten, 1)[0])
    free = free_cells(config, snap)
    return free[word % len(free)]


def flood_fill(config: SnakeConfig, start: Cell, blocked: set[Cell] | frozenset[Cell]) -> set[Cell]:
    """The cells 4-connected to ``start`` without crossing ``blocked`` or leaving the board."""
    seen, frontier = {start}, [start]
    while frontier:
        r, c = frontier.pop()
        for dr, dc in MOVES.values():
            cell = (r + dr, c + dc)
            inside = 0 <= cell[0] < config.rows and 0 <= cell[1] < config.cols
            if inside and cell not in blocked and cell not in seen:
                seen.add(cell)
                frontier.append(cell)
    return seen


def blocked(config: SnakeConfig, snap: Snapshot, cell: Cell) -> bool:
    """Whether moving into ``cell`` would kill the snake (off the board, a wall, the body but its tail)."""
    inside = 0 <= cell[0] < config.rows and 0 <= cell[1] < config.cols
    return not inside or cell in snap.walls or cell in snap.body[:-1]


def observe(config: SnakeConfig, snap: Snapshot) -> np.ndarray:
    """The observation of a state by the rules of :func:`regspeed.envs.snake.observe`, built
    cell by cell."""
    if config.observation == "grid":
        return _grid(config, snap)
    if config.observation == "features":
        return _features(config, snap)
    return _window(config, snap)


def _age(snap: Snapshot, cell: Cell) -> float:
    """The body channel: 1 at the head falling to 1/length at the tail, 0 elsewhere."""
    if cell not in snap.body:
        return 0.0
    return np.float32(len(snap.body) - snap.body.index(cell)) / np.float32(len(snap.body))


def _grid(config: SnakeConfig, snap: Snapshot) -> np.ndarray:
    channels = 4 if config.obstacle_density > 0 else 3
    grid = np.zeros((channels, config.rows, config.cols), np.float32)
    grid[0][snap.body[0]] = 1.0
    for cell in snap.body:
        grid[1][cell] = _age(snap, cell)
    grid[2][snap.food] = 1.0
    for cell in snap.walls:
        grid[3][cell] = 1.0
    return grid


def _features(config: SnakeConfig, snap: Snapshot) -> np.ndarray:
    head, h = snap.body[0], snap.heading
    danger = []
    for heading in (h, (h - 1) % 4, (h + 1) % 4):  # straight, left, right
        dr, dc = MOVES[heading]
        danger.append(blocked(config, snap, (head[0] + dr, head[1] + dc)))
    heading_bits = [h == i for i in range(4)]
    food = [snap.food[1] < head[1], snap.food[1] > head[1], snap.food[0] < head[0], snap.food[0] > head[0]]
    return np.asarray(danger + heading_bits + food, np.float32)


def _window(config: SnakeConfig, snap: Snapshot) -> np.ndarray:
    size, half = config.window_size, config.window_size // 2
    head, h = snap.body[0], snap.heading
    ahead, right = MOVES[h], MOVES[(h + 1) % 4]
    wall = np.zeros((size, size), np.float32)
    body = np.zeros((size, size), np.float32)
    food = np.zeros((size, size), np.float32)
    for i in range(size):  # window row 0 is farthest ahead
        for j in range(size):  # window column 0 is farthest to the snake's left
            forward, side = half - i, j - half
            cell = (head[0] + forward * ahead[0] + side * right[0], head[1] + forward * ahead[1] + side * right[1])
            inside = 0 <= cell[0] < config.rows and 0 <= cell[1] < config.cols
            wall[i, j] = not inside or cell in snap.walls
            body[i, j] = _age(snap, cell)
            food[i, j] = cell == snap.food
    to_food = (snap.food[0] - head[0], snap.food[1] - head[1])
    along = to_food[0] * ahead[0] + to_food[1] * ahead[1]
    across = to_food[0] * right[0] + to_food[1] * right[1]
    direction = [along > 0, along < 0, across < 0, across > 0]
    heading_bits = [h == i for i in range(4)]
    tail = np.asarray(direction + heading_bits, np.float32)
    return np.concatenate([wall.ravel(), body.ravel(), food.ravel(), tail])
