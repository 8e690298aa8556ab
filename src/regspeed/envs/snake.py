"""The Snake world as pure JAX functions of explicit state.

Every function here is pure, jit- and vmap-able and deterministic given the PRNG key that
the episode was reset with (the key lives in the state, Jumanji-style, so stepping needs
no key argument).

Representation. The body is a row-major ``rows * cols`` vector of *remaining lifetimes*: the
head cell holds the snake's length, the cell behind it length - 1, ..., the tail 1, free
cells 0. A step without food decrements every body cell (the tail cell reaches 0 and
frees itself) and writes the new length at the new head; a step onto food skips the
decrement, so the snake grows by one. Every operation is a dense elementwise pass over the
grid, which vectorises well over a batch of environments; there is no ring buffer to
gather from. The grid is also, divided by the length, the head-to-tail age gradient of the
``grid`` observation.

Episode ends. Hitting a wall or the body ends the episode as *terminated* (the tail cell
that moves away this step is free, so following one's own tail is legal); filling the
board is a win (*terminated*, with the win bonus). Starvation (``starvation_limit`` steps
without food) and the time limit end it as *truncated*. Terminated wins over truncated
when both happen on the same step. Agents must bootstrap on truncation, not on
termination; :class:`TimeStep` keeps the two apart.

Levels. With ``levels > 0`` or ``obstacle_density > 0`` the world is made of *levels*: a
level seed fixes the walls inside the board, the snake's start and the sequence of food
draws (the n-th food of an episode is drawn from the level's n-th random word among the
cells then free), so that a level played the same way plays out the same. Walls are body
cells of lifetime ``WALL`` (-1): they block like the body, never age, and food is never put
on them. ``levels = K`` draws every episode's level from the K seeds ``level_seed_offset ..
level_seed_offset + K - 1``; ``levels = 0`` a fresh random level each episode. Held-out
levels (``held_out_level_offset`` on) are played only by evaluations (:func:`reset_to_level`).
Walls stand on a *pillar lattice*, every other row and column at a per-level offset, never
touching one another, not even diagonally, so the free cells always stay connected; the
snake starts on a line of the other parity, which holds no wall.

Changing walls. With ``changing_walls`` (a changing world's ``board`` or ``obstacles``,
:mod:`~regspeed.envs.schedule`) an episode starts in the :class:`World` that :func:`reset` or
:func:`autoreset_step` is given, traced: its walls (outside a smaller active area, obstacles
inside) are written into the body as a level's are, the snake starts where it fits among them
and food is drawn among the free cells, so it never appears outside the active area. A world
without walls starts episodes exactly as the world without levels does (the same draws).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from regspeed.errors import ConfigError, refuse_non_finite
from regspeed.threefry_cpu import unroll_on_cpu

unroll_on_cpu()  # every program that steps the world draws random numbers: see threefry_cpu

# Headings, clockwise. DELTAS[h] is the (row, col) step of heading h; rows grow downwards.
UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3
HEADING_NAMES = ("up", "right", "down", "left")
DELTAS = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)], dtype=np.int32)

# Relative actions.
STRAIGHT, TURN_LEFT, TURN_RIGHT = 0, 1, 2

OBSERVATIONS = ("grid", "features", "window")
ACTION_MODES = ("relative", "absolute")
MIN_SIZE, MAX_SIZE = 4, 64
WALL = -1  # the body value of a wall cell
MAX_OBSTACLE_DENSITY = 0.25  # every pillar-lattice cell a wall: a quarter of an even board
LEVEL_SEEDS = 2**31  # level seeds are 0 .. 2**31 - 1


class Cause(enum.IntEnum):
    """Why an episode ended (``RUNNING`` while it has not)."""

    RUNNING = 0
    WALL = 1
    BODY = 2
    STARVED = 3
    TIME_LIMIT = 4
    WON = 5


@dataclasses.dataclass(frozen=True)
class SnakeConfig:
    """Static parameters of the Snake world (hashable: they select the compiled code).

    Attributes:
        rows, cols: grid size, each between 4 and 64.
        initial_length: length at reset, between 1 and ``min(rows, cols) - 1``.
        action_mode: ``relative`` (straight / turn left / turn right) or ``absolute``
            (up / right / down / left; reversing into the neck keeps the heading).
        observation: ``grid``, ``features`` or ``window`` (see :func:`observe`).
        window_size: side of the egocentric ``window`` view, odd, at least 3.
        reward_food, reward_death, reward_step, reward_win: reward for eating, dying
            (wall or body), every step, and the bonus for filling the board.
        shaping: scale of the potential-based distance shaping (0 = off). The potential is
            ``-shaping * manhattan(head, food) / (rows + cols - 2)`` and the shaping reward
            ``shaping_gamma * phi(s') - phi(s)`` with ``phi = 0`` at termination, which leaves
            optimal policies unchanged (Ng, Harada & Russell, 1999).
        shaping_gamma: discount used by the shaping term; set it to the agent's gamma.
        starvation_limit: steps without food before truncation (``None``: rows * cols).
        time_limit: steps per episode before truncation (``None``: no limit).
        obstacle_density: the share of the board's cells that are walls, on average, from 0
            to 0.25: each cell of the level's pillar lattice (every other row and column, a
            quarter of the board) is a wall with probability ``4 * obstacle_density``.
        levels: the number of training levels (level seeds ``level_seed_offset`` ..
            ``level_seed_offset + levels - 1``, drawn uniformly per episode); 0 draws a
            fresh random level each episode (with ``obstacle_density = 0`` too: the
            procedural world without levels).
        level_seed_offset: the first training level seed.
        held_out_level_offset: the first held-out level seed; evaluations play the held-out
            levels ``held_out_level_offset + i``, which must not be training levels.
        changing_walls: the walls change during a run (a changing world's ``board`` or
            ``obstacles``, :mod:`~regspeed.envs.schedule`; the agents set it from their
            schedule): every episode starts in a :class:`World` given to :func:`reset` /
            :func:`autoreset_step`, walls block and never age as in a world with levels, and
            the ``grid`` observation has its walls channel from the start. Without a
            :class:`World` it is the configured board without walls.
    """

    rows: int = 10
    cols: int = 10
    initial_length: int = 3
    action_mode: str = "relative"
    observation: str = "grid"
    window_size: int = 7
    reward_food: float = 1.0
    reward_death: float = -1.0
    reward_step: float = 0.0
    reward_win: float = 10.0
    shaping: float = 0.0
    shaping_gamma: float = 0.99
    starvation_limit: int | None = None
    time_limit: int | None = None
    obstacle_density: float = 0.0
    levels: int = 0
    level_seed_offset: int = 0
    held_out_level_offset: int = 1_000_000_000
    changing_walls: bool = False

    def __post_init__(self) -> None:
        refuse_non_finite(self)
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if not isinstance(value, int) or not MIN_SIZE <= value <= MAX_SIZE:
                raise ConfigError(name, f"must be an integer between {MIN_SIZE} and {MAX_SIZE} (got {value!r})")
        longest = min(self.rows, self.cols) - 1
        if not isinstance(self.initial_length, int) or not 1 <= self.initial_length <= longest:
            raise ConfigError(
                "initial_length",
                f"must be between 1 and min(rows, cols) - 1 = {longest} so the snake fits with room ahead "
                f"(got {self.initial_length!r})",
            )
        if self.action_mode not in ACTION_MODES:
            raise ConfigError("action_mode", f"must be one of {', '.join(ACTION_MODES)} (got {self.action_mode!r})")
        if self.observation not in OBSERVATIONS:
            raise ConfigError("observation", f"must be one of {', '.join(OBSERVATIONS)} (got {self.observation!r})")
        largest = 2 * MAX_SIZE - 1  # sees the whole of the largest board
        window = self.window_size
        if not isinstance(window, int) or not 3 <= window <= largest or window % 2 == 0:
            raise ConfigError("window_size", f"must be an odd integer from 3 to {largest} (got {window!r})")
        for name in ("starvation_limit", "time_limit"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(name, f"must be a positive integer, or None for the default (got {value!r})")
        if not 0.0 <= self.shaping_gamma <= 1.0:
            raise ConfigError("shaping_gamma", f"must be in [0, 1] (got {self.shaping_gamma!r})")
        if self.shaping < 0:
            raise ConfigError("shaping", f"must be >= 0; 0 turns shaping off (got {self.shaping!r})")
        if not 0.0 <= self.obstacle_density <= MAX_OBSTACLE_DENSITY:
            raise ConfigError(
                "obstacle_density",
                f"must be in [0, {MAX_OBSTACLE_DENSITY}]: walls stand on every other row and column so that the free "
                f"cells stay connected and the snake has room (got {self.obstacle_density!r})",
            )
        for name in ("levels", "level_seed_offset", "held_out_level_offset"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < LEVEL_SEEDS:
                raise ConfigError(name, f"must be an integer from 0 to {LEVEL_SEEDS - 1} (got {value!r})")
        if self.level_seed_offset + self.levels > LEVEL_SEEDS:
            raise ConfigError(
                "levels",
                f"level_seed_offset + levels must be at most {LEVEL_SEEDS} "
                f"(got {self.level_seed_offset + self.levels})",
            )
        self.check_held_out(1)
        if not isinstance(self.changing_walls, bool):
            raise ConfigError("changing_walls", f"must be true or false (got {self.changing_walls!r})")
        if self.changing_walls and self.has_levels:
            raise ConfigError("changing_walls", "a world with levels has its own walls: set levels = 0 and "
                              "obstacle_density = 0 for walls that change")  # fmt: skip

    def check_held_out(self, count: int) -> None:
        """Refuse a held-out set of ``count`` levels that overlaps the training levels."""
        if not self.has_levels:
            return
        if self.held_out_level_offset + count > LEVEL_SEEDS:
            raise ConfigError(
                "held_out_level_offset", f"must leave room for {count} held-out levels below {LEVEL_SEEDS} "
                f"(got {self.held_out_level_offset})"
            )
        first, last = self.level_seed_offset, self.level_seed_offset + self.levels
        start, end = self.held_out_level_offset, self.held_out_level_offset + count
        if self.levels and start < last and first < end:
            raise ConfigError(
                "held_out_level_offset",
                (f"the held-out levels {start} .. {end - 1} overlap" if count > 1 else f"{start} is inside")
                + f" the training levels {first} .. {last - 1}; "
                f"use a held-out offset of at least {last}"
                + (f" or at most {first - count}" if first >= count else ""),
            )

    @property
    def has_levels(self) -> bool:
        """Whether episodes are played on levels (walls, start and food fixed by a level seed)."""
        return self.levels > 0 or self.obstacle_density > 0

    @property
    def has_walls(self) -> bool:
        """Whether the board may hold walls (``WALL`` cells of the body): with levels, or changing walls."""
        return self.has_levels or self.changing_walls

    @property
    def num_actions(self) -> int:
        """Size of the discrete action space (3 relative, 4 absolute)."""
        return 3 if self.action_mode == "relative" else 4

    @property
    def num_cells(self) -> int:
        """Number of cells on the board."""
        return self.rows * self.cols

    @property
    def effective_starvation_limit(self) -> int:
        """The starvation limit in steps, with the default resolved."""
        return self.num_cells if self.starvation_limit is None else self.starvation_limit

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """Shape of one observation (float32)."""
        if self.observation == "grid":
            return (4 if self.obstacle_density > 0 or self.changing_walls else 3, self.rows, self.cols)
        if self.observation == "features":
            return (11,)
        return (3 * self.window_size**2 + 8,)


@struct.dataclass
class SnakeState:
    """The full state of one Snake episode (a pytree; batch it with vmap)."""

    key: jax.Array  # typed PRNG key, consumed by every step
    body: jax.Array  # int32[rows * cols] row-major, remaining lifetime of each body cell, 0 = free
    head: jax.Array  # int32[2], (row, col)
    heading: jax.Array  # int32, one of UP, RIGHT, DOWN, LEFT
    food: jax.Array  # int32[2], (row, col)
    length: jax.Array  # int32, current length = initial_length + food eaten
    steps: jax.Array  # int32, steps taken in this episode
    steps_since_food: jax.Array  # int32
    level: jax.Array | None = None  # uint32 level seed; None in the world without levels


@struct.dataclass
class TimeStep:
    """What one step returns besides the next state.

    With :func:`autoreset_step`, ``observation`` is that of the state to continue from (a
    fresh episode where ``done``), ``final_observation`` that of the state the step reached
    before resetting, and ``episode_*`` describe the episode as of this step (so, where
    ``done``, the episode that just ended).
    """

    observation: jax.Array
    final_observation: jax.Array
    reward: jax.Array  # float32
    terminated: jax.Array  # bool: death or win, do not bootstrap
    truncated: jax.Array  # bool: starvation or time limit, bootstrap
    cause: jax.Array  # int32 Cause, RUNNING unless done
    episode_score: jax.Array  # int32, food eaten in the episode
    episode_length: jax.Array  # int32, snake length
    episode_steps: jax.Array  # int32

    @property
    def done(self) -> jax.Array:
        """True where the episode ended on this step."""
        return self.terminated | self.truncated


# ---------------------------------------------------------------------------- reset


def _flat(config: SnakeConfig, cell: jax.Array) -> jax.Array:
    """Row-major index of ``cell`` (int32[..., 2]) on the board."""
    return cell[..., 0] * config.cols + cell[..., 1]


def _cell_rows_cols(config: SnakeConfig) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of every cell, in the row-major order of ``SnakeState.body``."""
    rr, cc = np.indices((config.rows, config.cols))
    return rr.ravel(), cc.ravel()


def _random_words(key: jax.Array, n: int) -> jax.Array:
    return jax.random.bits(key, (n,), dtype=jnp.uint32)


class _Start(NamedTuple):
    body: jax.Array
    head: jax.Array
    heading: jax.Array
    food: jax.Array


def _straight_snake(
    config: SnakeConfig, heading: jax.Array, along: jax.Array, across: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The body (lifetimes) and head of a straight snake of ``initial_length`` heading
    ``heading``, its head ``along`` cells from the wall it faces, on line ``across`` (the
    column of a vertical snake, the row of a horizontal one)."""
    length = config.initial_length
    row = jnp.select([heading == UP, heading == DOWN], [along, config.rows - 1 - along], default=across)
    col = jnp.select([heading == LEFT, heading == RIGHT], [along, config.cols - 1 - along], default=across)
    head = jnp.stack([row, col]).astype(jnp.int32)
    delta = jnp.asarray(DELTAS)[heading]
    rr, cc = _cell_rows_cols(config)
    dr, dc = rr - row, cc - col
    behind = -(dr * delta[0] + dc * delta[1])  # cells behind the head along the body line
    on_line = (dr * delta[1] - dc * delta[0]) == 0
    body = jnp.where(on_line & (behind >= 0) & (behind < length), length - behind, 0).astype(jnp.int32)
    return body, head


def _initial_snake(config: SnakeConfig, words: jax.Array) -> _Start:
    """A straight snake of ``initial_length`` with room for one step ahead, and its food.

    ``words`` are three random uint32: the heading, the placement among every position
    where the body fits and the cell ahead is on the board, and the food cell, drawn with
    the same rule as :func:`_sample_free_cell` (the k-th free cell in row-major order) but
    in O(length): the body is a line, so its cells are known without scanning the board.
    """
    length = config.initial_length
    heading = (words[0] % 4).astype(jnp.int32)
    vertical = (heading == UP) | (heading == DOWN)
    n_along = jnp.where(vertical, config.rows, config.cols)
    n_across = jnp.where(vertical, config.cols, config.rows)
    n_placements = (n_along - length) * n_across
    placement = (words[1] % n_placements.astype(jnp.uint32)).astype(jnp.int32)
    along = 1 + placement // n_across  # distance of the head from the wall it faces
    body, head = _straight_snake(config, heading, along, placement % n_across)
    delta = jnp.asarray(DELTAS)[heading]

    # Body cells in row-major order are first + i * stride, i < length. The k-th free cell
    # is k plus the number of body cells before it, and body cell i precedes it exactly
    # when the free cells before body cell i, (first + i * stride) - i, number at most k.
    stride = jnp.where(vertical, config.cols, 1)
    tail = head - (length - 1) * delta
    first = jnp.minimum(head[0] * config.cols + head[1], tail[0] * config.cols + tail[1])
    k = (words[2] % np.uint32(config.num_cells - length)).astype(jnp.int32)
    body_index = jnp.arange(length)
    cell = k + (first + body_index * (stride - 1) <= k).sum()
    food = jnp.stack([cell // config.cols, cell % config.cols]).astype(jnp.int32)
    return _Start(body, head, heading, food)


# ---------------------------------------------------------------------------- levels

_SALT, _GOLDEN = np.uint32(0x5EED1E7E), np.uint32(0x9E3779B9)
_PARITY, _HEADING, _PLACEMENT, _SITES = 0, 1, 2, 3  # indices of a level's random words
_FOOD = 1 << 20  # the n-th food of an episode draws word _FOOD + n


def _mix(x: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: a bijection of uint32 that mixes every bit."""
    x = x ^ (x >> 16)
    x = x * np.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * np.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def level_words(level: jax.Array, first: int | jax.Array, count: int) -> jax.Array:
    """Random words ``first .. first + count - 1`` of a level (uint32[count]): a counter-based
    hash of the level seed, so any word is drawn without the ones before it."""
    return _words_at(_level_key(level), jnp.asarray(first, jnp.uint32) + jnp.arange(count, dtype=jnp.uint32))


def _level_key(level: jax.Array) -> jax.Array:
    """The hash of a level seed that each of the level's words hashes again (uint32)."""
    return _mix(jnp.asarray(level, jnp.uint32) * _GOLDEN + _SALT)


def _words_at(key: jax.Array, index: jax.Array | np.ndarray | int) -> jax.Array:
    """The words of a level key at the given indices (uint32, the shape of ``index``)."""
    return _mix(key + jnp.asarray(index, jnp.uint32) * _GOLDEN)


def _pillar_sites(config: SnakeConfig) -> tuple[int, int]:
    """Rows and columns of the pillar lattice's sites (every other row and column)."""
    return (config.rows + 1) // 2, (config.cols + 1) // 2


def level_walls(config: SnakeConfig, level: jax.Array) -> jax.Array:
    """The walls of a level, bool[rows * cols] row-major.

    The level's two parity bits pick the pillar lattice (rows of one parity, columns of
    one parity); each lattice cell is a wall with probability ``4 * obstacle_density``.
    Lattice cells are two apart, so no two walls touch, even diagonally: every free cell's
    neighbourhood around a wall is free and the free cells stay connected.
    """
    key = _level_key(level)
    return _walls(config, key, _words_at(key, _PARITY))


def _walls(config: SnakeConfig, key: jax.Array, parity: jax.Array) -> jax.Array:
    """:func:`level_walls` from the level's key and its parity word."""
    if config.obstacle_density == 0:
        return jnp.zeros(config.num_cells, bool)
    rr, cc = _cell_rows_cols(config)
    on_lattice = (rr % 2 == (parity & 1)) & (cc % 2 == ((parity >> 1) & 1))
    threshold = round(4 * config.obstacle_density * 2**32)  # a word below it: a wall
    if threshold >= 2**32:  # every lattice cell (densities within 2^-35 of 0.25 round here too)
        return on_lattice
    # Every cell hashes its own site's word (the word of site i is the level's word
    # _SITES + i). Hashing once per site and repeating the sites over the board would
    # hash a quarter as much but costs more: XLA:CPU computes the repeat's source index
    # per cell, which does not vectorise.
    site = (rr // 2) * _pillar_sites(config)[1] + cc // 2
    return on_lattice & (_words_at(key, _SITES + site) < np.uint32(threshold))


def _level_food_word(level: jax.Array, eaten: jax.Array | int) -> jax.Array:
    """The level's word that draws the food after ``eaten`` foods of an episode (uint32)."""
    return level_words(level, _FOOD + eaten, 1)[0]


def _level_start(config: SnakeConfig, level: jax.Array) -> _Start:
    """A level's walls (in the body, as ``WALL``), its snake and its first food."""
    body, head, heading = _level_snake(config, level)
    return _Start(body, head, heading, _sample_free_cell(config, body, _level_food_word(level, 0)))


def _level_snake(config: SnakeConfig, level: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A level's body (walls as ``WALL`` and the snake's lifetimes), head and heading.

    The snake is straight, as in the world without levels, on a line of the parity that
    holds no wall (any line when the level has no walls), with room for one step ahead.
    """
    key = _level_key(level)
    words = _words_at(key, np.arange(_SITES))
    length = config.initial_length
    heading = (words[_HEADING] % 4).astype(jnp.int32)
    vertical = (heading == UP) | (heading == DOWN)
    n_along = jnp.where(vertical, config.rows, config.cols)
    if config.obstacle_density > 0:
        # Lines of the parity other than the lattice's: a vertical snake's column, a
        # horizontal snake's row. Lines 1 - p, 3 - p, ... of a board of n lines.
        lattice = jnp.where(vertical, (words[_PARITY] >> 1) & 1, words[_PARITY] & 1).astype(jnp.int32)
        n_lines = jnp.where(vertical, config.cols, config.rows)
        n_across = (n_lines - (1 - lattice) + 1) // 2
        first_line, line_step = 1 - lattice, 2
    else:
        n_across = jnp.where(vertical, config.cols, config.rows)
        first_line, line_step = 0, 1
    n_placements = (n_along - length) * n_across
    placement = (words[_PLACEMENT] % n_placements.astype(jnp.uint32)).astype(jnp.int32)
    along, across = 1 + placement // n_across, first_line + line_step * (placement % n_across)
    heading, along, across, key, parity = _materialised(heading, along, across, key, words[_PARITY])
    body, head = _straight_snake(config, heading, along, across)
    return jnp.where(_walls(config, key, parity), WALL, body), head, heading


def _materialised(*values: jax.Array) -> tuple[jax.Array, ...]:
    """``values`` unchanged, but computed once and stored rather than recomputed by every reader.

    XLA:CPU fuses the computation of a value into each loop that reads it: a scalar read by
    every cell of the board is recomputed per cell (here hashes and divisions by a variable,
    which do not vectorise), a board read by a select and a gather is recomputed by both
    (and the gather does not vectorise). It does not fuse a reduction over the minor axis
    into its readers, so adding a zero through one stores the value (it saves 10% to 20%
    of a step with levels at batch 8192).
    """
    return tuple(jnp.stack([value, jnp.zeros_like(value)], -1).sum(-1, dtype=value.dtype) for value in values)


def _draw_level(config: SnakeConfig, word: jax.Array) -> jax.Array:
    """A training level's seed (uint32) from a random word: one of the ``levels`` training
    seeds, or any seed when ``levels = 0``."""
    if config.levels:
        return np.uint32(config.level_seed_offset) + word % np.uint32(config.levels)
    return word >> 1


def reset_to_level(config: SnakeConfig, level: jax.Array | int, key: jax.Array) -> SnakeState:
    """A fresh episode on level ``level`` (a world with levels only); ``key`` draws the
    levels of the episodes after it (with :func:`autoreset_step`)."""
    if not config.has_levels:
        raise ConfigError("levels", "this world has no levels: set levels > 0 or obstacle_density > 0")
    level = jnp.asarray(level, jnp.uint32)
    return _fresh_state(config, _level_start(config, level), key, level)


def _fresh_state(config: SnakeConfig, start: _Start, key: jax.Array, level: jax.Array | None = None) -> SnakeState:
    """The state at the start of an episode."""
    zero = jnp.zeros((), jnp.int32)
    return SnakeState(
        key=key,
        body=start.body,
        head=start.head,
        heading=start.heading,
        food=start.food,
        length=jnp.asarray(config.initial_length, jnp.int32),
        steps=zero,
        steps_since_food=zero,
        level=level,
    )


def walls(config: SnakeConfig, state: SnakeState) -> jax.Array:
    """Where the walls inside the board are, bool[rows * cols] (none without levels or changing walls)."""
    return state.body < 0


# -------------------------------------------------------------------- changing walls


class World(NamedTuple):
    """The walls an episode starts with in a world whose walls change (``changing_walls``),
    and where its snake may start; traced arguments of :func:`reset` and
    :func:`autoreset_step`, so every world runs the same compiled program. Made on the host
    by :func:`worlds` (a leading axis of worlds; :func:`world_at` picks one).

    Attributes:
        walls: bool[rows * cols] row-major, the wall cells (outside the active area,
            obstacles inside it).
        starts: int32[4, n, 2], per heading the ``(along, across)`` (as in the world without
            levels: the head's distance from the board's edge it faces, and its line) of every
            straight start whose body and the cell ahead are free, in the order of the world
            without walls' placements, padded to a common ``n``.
        counts: int32[4], how many of ``starts`` each heading has (at least one).
        free: int32[rows * cols], the cells that are not walls in row-major order (padded).
        rank: int32[rows * cols], each cell's index in ``free`` (a wall's is never read).
        open: int32, how many cells are not walls.
    """

    walls: np.ndarray | jax.Array
    starts: np.ndarray | jax.Array
    counts: np.ndarray | jax.Array
    free: np.ndarray | jax.Array
    rank: np.ndarray | jax.Array
    open: np.ndarray | jax.Array


def area_walls(config: SnakeConfig, top: int, left: int, rows: int, cols: int) -> np.ndarray:
    """bool[rows * cols] (host): every cell of the board outside the ``rows x cols`` area whose
    top-left cell is ``(top, left)``."""
    rr, cc = _cell_rows_cols(config)
    return ~((rr >= top) & (rr < top + rows) & (cc >= left) & (cc < left + cols))


def pillar_walls(config: SnakeConfig, walls: np.ndarray, density: float, generator: np.random.Generator) -> np.ndarray:
    """``walls`` (bool[rows * cols], host) with obstacles added where a level would put them: on
    the pillar lattice of a drawn parity (every other row and column), each lattice cell that is
    not a wall already a wall with probability ``4 * density``. No two obstacles touch, even
    diagonally, so the free cells of a rectangular area of side 2 or more stay connected."""
    rr, cc = _cell_rows_cols(config)
    parity = int(generator.integers(0, 4))
    on_lattice = (rr % 2 == (parity & 1)) & (cc % 2 == (parity >> 1))
    return walls | (on_lattice & (generator.random(config.num_cells) < 4 * density))


def worlds(config: SnakeConfig, walls: np.ndarray) -> World:
    """The :class:`World` of each of ``walls`` (bool[k, rows * cols], host NumPy), on a leading
    axis of ``k``. Raises ``ValueError`` where a heading has no start that fits."""
    walls = np.asarray(walls, bool).reshape(-1, config.num_cells)
    found = [[_fitting_starts(config, blocked, heading) for heading in range(4)] for blocked in walls]
    counts = np.array([[len(starts) for starts in per_heading] for per_heading in found], np.int32)
    if counts.size and counts.min() < 1:
        world, heading = np.argwhere(counts < 1)[0]
        raise ValueError(f"world {world}: no start of length {config.initial_length} fits heading "
                         f"{HEADING_NAMES[heading]}")  # fmt: skip
    starts = np.zeros((len(walls), 4, max(1, counts.max(initial=1)), 2), np.int32)
    free = np.zeros(walls.shape, np.int32)
    for world, per_heading in enumerate(found):
        for heading, fitting in enumerate(per_heading):
            starts[world, heading, : len(fitting)] = fitting
        cells = np.flatnonzero(~walls[world])
        free[world, : len(cells)] = cells
    rank = (np.cumsum(~walls, axis=1) - 1).astype(np.int32)
    return World(walls, starts, counts, free, rank, (~walls).sum(1).astype(np.int32))


def world_at(found: World, index: jax.Array | int) -> World:
    """World ``index`` of :func:`worlds` (``index`` may be traced)."""
    return World(*(jnp.asarray(table)[index] for table in found))


def _fitting_starts(config: SnakeConfig, walls: np.ndarray, heading: int) -> np.ndarray:
    """int32[n, 2]: the ``(along, across)`` of every start heading ``heading`` whose body and
    the cell ahead avoid ``walls`` (bool[rows * cols]), in :func:`_initial_snake`'s order
    (placement ``p``: along ``1 + p // n_across``, across ``p % n_across``)."""
    length = config.initial_length
    vertical = heading in (UP, DOWN)
    n_along, n_across = (config.rows, config.cols) if vertical else (config.cols, config.rows)
    along, across = (a.ravel() for a in np.meshgrid(np.arange(1, n_along - length + 1), np.arange(n_across),
                                                     indexing="ij"))  # fmt: skip
    row = {UP: along, DOWN: config.rows - 1 - along}.get(heading, across)
    col = {LEFT: along, RIGHT: config.cols - 1 - along}.get(heading, across)
    delta = DELTAS[heading]
    blocked = walls.reshape(config.rows, config.cols)
    fits = np.ones(along.shape, bool)
    for behind in range(-1, length):  # the cell ahead, then the body from the head
        fits &= ~blocked[row - behind * delta[0], col - behind * delta[1]]
    return np.stack([along[fits], across[fits]], -1).astype(np.int32)


def _world_start(config: SnakeConfig, world: World, words: jax.Array) -> _Start:
    """:func:`_initial_snake` in ``world``: the heading and a start among those that fit in it
    from the same words, the food among its free cells. In a world without walls it is
    :func:`_initial_snake`'s start, value for value.

    The food is the k-th free cell as :func:`_sample_free_cell` draws it, found in O(length)
    as :func:`_initial_snake` finds it, over the cells that are not walls (``world.free``)
    instead of the board's: the body cells' indices among them (``world.rank``) increase in
    row-major order."""
    length = config.initial_length
    heading = (words[0] % 4).astype(jnp.int32)
    count = jnp.asarray(world.counts)[heading]
    placement = (words[1] % count.astype(jnp.uint32)).astype(jnp.int32)
    along, across = jnp.asarray(world.starts)[heading, placement]
    heading, along, across = _materialised(heading, along, across)  # read by every cell
    body, head = _straight_snake(config, heading, along, across)
    body = jnp.where(jnp.asarray(world.walls), WALL, body)
    delta = jnp.asarray(DELTAS)[heading]
    stride = jnp.where((heading == UP) | (heading == DOWN), config.cols, 1)
    tail = head - (length - 1) * delta
    first = jnp.minimum(_flat(config, head), _flat(config, tail))
    ranks = jnp.asarray(world.rank)[first + jnp.arange(length) * stride]
    k = (words[2] % (jnp.asarray(world.open) - length).astype(jnp.uint32)).astype(jnp.int32)
    cell = jnp.asarray(world.free)[k + (ranks - jnp.arange(length) <= k).sum()]
    food = jnp.stack([cell // config.cols, cell % config.cols]).astype(jnp.int32)
    return _Start(body, head, heading, food)


def _start(config: SnakeConfig, words: jax.Array, world: World | None) -> _Start:
    """A fresh episode's start in the world without levels (in ``world`` where one is given)."""
    if world is None:
        return _initial_snake(config, words)
    if not config.changing_walls:
        raise ConfigError("changing_walls", "a World is given to a world whose walls do not change: "
                          "without changing_walls its walls would not block")  # fmt: skip
    return _world_start(config, world, words)


def _inclusive_cumsum(counts: jax.Array) -> jax.Array:
    """Prefix sums of a short float vector as one small matmul.

    ``jnp.cumsum`` lowers to an associative scan of many slices on CPU, and XLA re-fuses
    the producer of its input into every slice; a triangular matmul is one dense op.
    Exact for integer counts below 2**24.
    """
    n = counts.shape[-1]
    return counts @ jnp.asarray(np.triu(np.ones((n, n), np.float32)))


def _sample_free_cell(config: SnakeConfig, body: jax.Array, word: jax.Array) -> jax.Array:
    """A cell drawn uniformly among the free cells of ``body`` (row, col).

    The k-th free cell in row-major order, k = word mod (number of free cells), found in
    two levels (the row from per-row counts, then the column within that row). The modulo
    bias is below n_cells / 2**32. With no free cell (a won board) it returns row 0.
    """
    free = (body == 0).astype(jnp.float32).reshape(config.rows, config.cols)
    per_row = free.sum(axis=1)
    rows_cum = _inclusive_cumsum(per_row)
    n_free = jnp.maximum(rows_cum[-1], 1.0).astype(jnp.uint32)
    k = (word % n_free).astype(jnp.float32)
    row = jnp.minimum((rows_cum <= k).sum(), config.rows - 1)
    k_in_row = k - (rows_cum[row] - per_row[row])
    cols_cum = _inclusive_cumsum(free[row])
    col = jnp.minimum((cols_cum <= k_in_row).sum(), config.cols - 1)
    return jnp.stack([row, col]).astype(jnp.int32)


def reset(config: SnakeConfig, key: jax.Array, world: World | None = None) -> SnakeState:
    """A fresh episode: a straight snake at a uniformly random fitting place and heading,
    and one food uniformly among the free cells; in a world with levels, the start of a
    training level drawn at random; with changing walls, in ``world`` (its walls, and a
    start that fits among them; none: the board without walls)."""
    key, sub = jax.random.split(key)
    if config.has_levels:
        return reset_to_level(config, _draw_level(config, _random_words(sub, 1)[0]), key)
    return _fresh_state(config, _start(config, _random_words(sub, 3), world), key)


# ----------------------------------------------------------------------------- step


def next_heading(config: SnakeConfig, heading: jax.Array, action: jax.Array) -> jax.Array:
    """The heading after ``action``; in absolute mode a reversal keeps the heading."""
    action = jnp.asarray(action, jnp.int32)
    if config.action_mode == "relative":
        turn = jnp.asarray([0, 3, 1], jnp.int32)[action]  # straight, left = -1, right = +1
        return (heading + turn) % 4
    return jnp.where(action == (heading + 2) % 4, heading, action)


def action_mask(config: SnakeConfig, state: SnakeState) -> jax.Array:
    """Which actions change something other than being ignored: all of them in relative
    mode; in absolute mode, every direction but the reversal into the neck."""
    if config.action_mode == "relative":
        return jnp.ones(3, bool)
    return jnp.arange(4) != (state.heading + 2) % 4


def _potential(config: SnakeConfig, head: jax.Array, food: jax.Array) -> jax.Array:
    distance = jnp.abs(head - food).sum().astype(jnp.float32)
    return -config.shaping * distance / (config.rows + config.cols - 2)


class _Outcome(NamedTuple):
    """What a move did, before any food is placed or episode reset."""

    reached: SnakeState  # food not yet re-placed
    ate: jax.Array
    died: jax.Array
    won: jax.Array
    truncated: jax.Array
    cause: jax.Array


def _move(config: SnakeConfig, state: SnakeState, action: jax.Array) -> _Outcome:
    """Move the snake one cell: new body, flags and cause; the food stays where it was."""
    heading = next_heading(config, state.heading, action)
    target = state.head + jnp.asarray(DELTAS)[heading]
    in_bounds = (target >= 0).all() & (target[0] < config.rows) & (target[1] < config.cols)
    safe_target = jnp.clip(target, 0, jnp.asarray([config.rows - 1, config.cols - 1]))
    # The tail cell (lifetime 1) leaves this step, so only lifetimes > 1 block. Food is never
    # on the body, so on a step that eats (and keeps the tail) the target is free anyway.
    entered = state.body[_flat(config, safe_target)]
    hits_body = in_bounds & (entered > 1)
    hits_wall = ~in_bounds | (entered == WALL) if config.has_walls else ~in_bounds
    died = hits_wall | hits_body
    ate = ~died & (target == state.food).all()

    new_length = state.length + ate.astype(jnp.int32)
    # A dead snake stays where it was (it did not enter the wall or its body): no cell is
    # written and nothing ages. Folding that into one pass saves a select over the board.
    write_at = jnp.where(died, -1, _flat(config, safe_target))
    aging = (~ate & ~died).astype(jnp.int32)
    if config.has_walls:  # walls (negative) never age
        aged = jnp.where(state.body > 0, state.body - aging, state.body)
        cells = config.num_cells - (state.body == WALL).sum(dtype=jnp.int32)
    else:
        aged, cells = jnp.maximum(state.body - aging, 0), config.num_cells
    body = jnp.where(np.arange(config.num_cells) == write_at, new_length, aged)
    won = ~died & (new_length == cells)
    steps = state.steps + 1
    steps_since_food = jnp.where(ate, 0, state.steps_since_food + 1)
    starved = steps_since_food >= config.effective_starvation_limit
    timed_out = steps >= config.time_limit if config.time_limit is not None else jnp.zeros((), bool)
    truncated = ~(died | won) & (starved | timed_out)
    cause = jnp.select(
        [hits_wall, hits_body, won, truncated & starved, truncated],
        [Cause.WALL, Cause.BODY, Cause.WON, Cause.STARVED, Cause.TIME_LIMIT],
        default=Cause.RUNNING,
    ).astype(jnp.int32)
    reached = state.replace(
        body=body,
        head=jnp.where(died, state.head, target),
        heading=heading,
        length=jnp.where(died, state.length, new_length),
        steps=steps,
        steps_since_food=steps_since_food,
    )
    return _Outcome(reached, ate, died, won, truncated, cause)


def _reward(config: SnakeConfig, before: SnakeState, outcome: _Outcome) -> jax.Array:
    """Reward of a move; ``outcome.reached`` must already hold the new food."""
    reward = (
        config.reward_step
        + config.reward_food * outcome.ate.astype(jnp.float32)
        + config.reward_death * outcome.died.astype(jnp.float32)
        + config.reward_win * outcome.won.astype(jnp.float32)
    )
    if config.shaping > 0:
        terminated = outcome.died | outcome.won
        after = jnp.where(terminated, 0.0, _potential(config, outcome.reached.head, outcome.reached.food))
        reward = reward + config.shaping_gamma * after - _potential(config, before.head, before.food)
    return jnp.asarray(reward, jnp.float32)


def _timestep(
    config: SnakeConfig, before: SnakeState, outcome: _Outcome, observation: jax.Array, final_observation: jax.Array
) -> TimeStep:
    reached = outcome.reached
    return TimeStep(
        observation=observation,
        final_observation=final_observation,
        reward=_reward(config, before, outcome),
        terminated=outcome.died | outcome.won,
        truncated=outcome.truncated,
        cause=outcome.cause,
        episode_score=reached.length - config.initial_length,
        episode_length=reached.length,
        episode_steps=reached.steps,
    )


def _moved(config: SnakeConfig, state: SnakeState, action: jax.Array) -> tuple[_Outcome, jax.Array]:
    """The move of one step with fresh food placed where the snake ate, and the step's random
    words. :func:`step` and :func:`autoreset_step` make the same draws, so both reach the
    same state while an episode runs."""
    key, sub = jax.random.split(state.key)
    words = _random_words(sub, 1 if config.has_levels else 4)
    outcome = _move(config, state.replace(key=key), action)
    reached = outcome.reached
    eaten = reached.length - config.initial_length
    food_word = _level_food_word(state.level, eaten) if config.has_levels else words[0]
    new_food = _sample_free_cell(config, reached.body, food_word)
    reached = reached.replace(food=jnp.where(outcome.ate & ~outcome.won, new_food, reached.food))
    return outcome._replace(reached=reached), words


def step(config: SnakeConfig, state: SnakeState, action: jax.Array) -> tuple[SnakeState, TimeStep]:
    """One step without reset. Stepping a state whose episode has ended is undefined:
    use :func:`autoreset_step` for rollouts."""
    outcome, _ = _moved(config, state, action)
    observation = observe(config, outcome.reached)
    return outcome.reached, _timestep(config, state, outcome, observation, observation)


def autoreset_step(
    config: SnakeConfig,
    state: SnakeState,
    action: jax.Array,
    *,
    final_observation: bool = True,
    world: World | None = None,
) -> tuple[SnakeState, TimeStep]:
    """One step; where the episode ends, the returned state is already a fresh episode.

    The fresh episode is drawn from the same key stream, so a batch stays deterministic.
    ``TimeStep.final_observation`` is the observation of the state the step reached before
    the reset (what a truncated episode bootstraps from); ``final_observation=False``
    (static) skips computing it and repeats ``observation`` instead. With changing walls the
    fresh episode starts in ``world`` (:func:`reset`); a running episode goes on in the walls
    it started with.
    """
    if config.has_levels and config.time_limit is None:
        outcome, continuing = _level_autoreset(config, state, action, final_observation)
    else:
        outcome, words = _moved(config, state, action)
        if config.has_levels:
            level = _draw_level(config, words[0])
            continuing = _continuing(config, outcome, _level_start(config, level), level)
        else:
            if config.changing_walls and final_observation:
                (reached_body,) = _materialised(outcome.reached.body)
                outcome = outcome._replace(reached=outcome.reached.replace(body=reached_body))
            continuing = _continuing(config, outcome, _start(config, words[1:], world))
    observation = observe(config, continuing)
    final = observe(config, outcome.reached) if final_observation else observation
    return continuing, _timestep(config, state, outcome, observation, final)


def _done(outcome: _Outcome) -> jax.Array:
    """Where the episode ended on this step."""
    return outcome.died | outcome.won | outcome.truncated


def _continuing(config: SnakeConfig, outcome: _Outcome, start: _Start, level: jax.Array | None = None) -> SnakeState:
    """The state a step reached, or where its episode ended the fresh episode ``start`` (on ``level``)."""
    reached, done = outcome.reached, _done(outcome)
    zero = jnp.zeros((), jnp.int32)
    return reached.replace(
        body=jnp.where(done, start.body, reached.body),
        head=jnp.where(done, start.head, reached.head),
        heading=jnp.where(done, start.heading, reached.heading),
        food=jnp.where(done, start.food, reached.food),
        length=jnp.where(done, config.initial_length, reached.length),
        steps=jnp.where(done, zero, reached.steps),
        steps_since_food=jnp.where(done, zero, reached.steps_since_food),
        level=reached.level if level is None else jnp.where(done, level, reached.level),
    )


def _level_autoreset(
    config: SnakeConfig, state: SnakeState, action: jax.Array, final_observation: bool
) -> tuple[_Outcome, SnakeState]:
    """:func:`_moved` then the reset of :func:`autoreset_step` in a world with levels and no
    time limit, with one food draw where they make two: the food after eating where the
    episode goes on, the next level's first food where it ends. Both draw from the body and
    the level word that the other path uses, so every result is the same.

    Without a time limit an episode that ate goes on (eating resets starvation and a win
    places no food), so the state the step reached never needs the food drawn where the
    episode ends.
    """
    key, sub = jax.random.split(state.key)
    level = _draw_level(config, _random_words(sub, 1)[0])
    outcome = _move(config, state.replace(key=key), action)
    if final_observation:  # the body the step reached is read twice: by the reset and the final observation
        (reached_body,) = _materialised(outcome.reached.body)
        outcome = outcome._replace(reached=outcome.reached.replace(body=reached_body))
    body, head, heading = _level_snake(config, level)
    continuing = _continuing(config, outcome, _Start(body, head, heading, outcome.reached.food), level)
    eaten = continuing.length - config.initial_length  # 0 where the episode ended
    food = _sample_free_cell(config, continuing.body, _level_food_word(continuing.level, eaten))
    places = outcome.ate & ~outcome.won
    reached = outcome.reached.replace(food=jnp.where(places, food, outcome.reached.food))
    continuing = continuing.replace(food=jnp.where(_done(outcome) | places, food, continuing.food))
    return outcome._replace(reached=reached), continuing


# --------------------------------------------------------------------- observations


def observe(config: SnakeConfig, state: SnakeState) -> jax.Array:
    """The observation selected by ``config.observation`` (float32, ``observation_shape``).

    - ``grid``: channels head, body, food over the board (and walls, where the world has
      obstacles or changing walls); the body channel is the age gradient, 1 at the head falling to
      1/length at the tail.
    - ``features``: the classic 11 booleans: danger (edge, wall or body) straight / left / right, heading
      one-hot (up, right, down, left), food left / right / up / down of the head.
    - ``window``: an egocentric ``k x k`` view rotated so the heading points up (channels
      wall (the board's edge or a wall inside it), body age, food), then food ahead /
      behind / left / right in the snake's frame, then the heading one-hot (needed to act in absolute mode); flattened.
    """
    if config.observation == "grid":
        return _grid_observation(config, state)
    if config.observation == "features":
        return _feature_observation(config, state)
    return _window_observation(config, state)


def _one_hot_cell(config: SnakeConfig, cell: jax.Array) -> jax.Array:
    return (np.arange(config.num_cells) == _flat(config, cell)).astype(jnp.float32)


def _grid_observation(config: SnakeConfig, state: SnakeState) -> jax.Array:
    body = jnp.maximum(state.body, 0) if config.has_walls else state.body
    age = body.astype(jnp.float32) * (1.0 / state.length.astype(jnp.float32))
    channels = [_one_hot_cell(config, state.head), age, _one_hot_cell(config, state.food)]
    if config.obstacle_density > 0 or config.changing_walls:
        channels.append((state.body == WALL).astype(jnp.float32))
    return jnp.stack(channels).reshape(config.observation_shape)


def is_blocked(config: SnakeConfig, body: jax.Array, cells: jax.Array) -> jax.Array:
    """Whether moving into each of ``cells`` (int32[..., 2]) would kill the snake."""
    in_bounds = (cells >= 0).all(-1) & (cells[..., 0] < config.rows) & (cells[..., 1] < config.cols)
    safe = jnp.clip(cells, 0, jnp.asarray([config.rows - 1, config.cols - 1]))
    entered = body[_flat(config, safe)]
    return ~in_bounds | (entered > 1) | (entered == WALL)


def _feature_observation(config: SnakeConfig, state: SnakeState) -> jax.Array:
    deltas = jnp.asarray(DELTAS)
    h = state.heading
    ahead = state.head + deltas[jnp.stack([h, (h + 3) % 4, (h + 1) % 4])]  # straight, left, right
    danger = is_blocked(config, state.body, ahead)
    heading = jnp.arange(4) == h
    food = jnp.stack(
        [
            state.food[1] < state.head[1],
            state.food[1] > state.head[1],
            state.food[0] < state.head[0],
            state.food[0] > state.head[0],
        ]
    )
    return jnp.concatenate([danger, heading, food]).astype(jnp.float32)


def _window_offsets(size: int) -> np.ndarray:
    """int32[4, size*size, 2]: board offsets of each window cell, per heading.

    Window row 0 is farthest ahead, the centre is the head, window columns run from the
    snake's left to its right.
    """
    half = size // 2
    forward = half - np.arange(size)[:, None]  # cells ahead, per window row
    right = np.arange(size)[None, :] - half  # cells to the right, per window column
    offsets = []
    for h in range(4):
        along, side = DELTAS[h], DELTAS[(h + 1) % 4]
        cell = forward[..., None] * along + right[..., None] * side
        offsets.append(cell.reshape(-1, 2))
    return np.stack(offsets).astype(np.int32)


def _window_observation(config: SnakeConfig, state: SnakeState) -> jax.Array:
    size = config.window_size
    cells = state.head + jnp.asarray(_window_offsets(size))[state.heading]
    in_bounds = (cells >= 0).all(-1) & (cells[:, 0] < config.rows) & (cells[:, 1] < config.cols)
    safe = jnp.clip(cells, 0, jnp.asarray([config.rows - 1, config.cols - 1]))
    index = _flat(config, safe)
    if config.has_walls:  # two boards computed once: a gather with two readers recomputed the step's board per cell
        wall_cells, ages = _materialised(state.body == WALL, jnp.maximum(state.body, 0))
        wall = ~in_bounds | wall_cells[index]
        seen = ages[index]
    else:
        wall, seen = ~in_bounds, state.body[index]
    age = seen.astype(jnp.float32) / state.length.astype(jnp.float32)
    body = jnp.where(in_bounds, age, 0.0)
    food = in_bounds & (cells == state.food).all(-1)
    deltas = jnp.asarray(DELTAS)
    to_food = state.food - state.head
    ahead = (to_food * deltas[state.heading]).sum()
    right = (to_food * deltas[(state.heading + 1) % 4]).sum()
    direction = jnp.stack([ahead > 0, ahead < 0, right < 0, right > 0])
    heading = jnp.arange(4) == state.heading
    return jnp.concatenate(
        [
            wall.astype(jnp.float32),
            body,
            food.astype(jnp.float32),
            direction.astype(jnp.float32),
            heading.astype(jnp.float32),
        ]
    )


# ------------------------------------------------------------------ batched helpers


def reset_batch(config: SnakeConfig, key: jax.Array, batch_size: int, world: World | None = None) -> SnakeState:
    """``batch_size`` independent episodes, one key each (split from ``key``; with changing
    walls, all in ``world``)."""
    return jax.vmap(lambda k: reset(config, k, world))(jax.random.split(key, batch_size))


def board(config: SnakeConfig, state: SnakeState) -> np.ndarray:
    """The body lifetimes of one (unbatched) state as a host array int32[rows, cols] (walls: ``WALL``)."""
    return np.asarray(state.body).reshape(config.rows, config.cols)


def to_config(**kwargs: Any) -> SnakeConfig:
    """A :class:`SnakeConfig` from keyword arguments, rejecting unknown names clearly."""
    known = {f.name for f in dataclasses.fields(SnakeConfig)}
    for name in kwargs:
        if name not in known:
            raise ConfigError(name, f"unknown Snake parameter; known: {', '.join(sorted(known))}")
    return SnakeConfig(**kwargs)
