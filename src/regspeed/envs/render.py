"""Pictures of Snake states: text for a terminal, RGB frames, animated GIFs.

All functions take one unbatched :class:`~regspeed.envs.snake.SnakeState` (index a batch
with ``jax.tree.map(lambda x: x[i], states)`` first) and work on host NumPy copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from regspeed.envs.snake import SnakeConfig, SnakeState, board

HEAD_GLYPHS = "^>v<"  # indexed by heading: up, right, down, left

BACKGROUND = np.array([24, 26, 33], np.uint8)
GRID_LINE = np.array([36, 39, 48], np.uint8)
WALL = np.array([90, 94, 110], np.uint8)
FOOD = np.array([230, 72, 72], np.uint8)
HEAD = np.array([250, 220, 90], np.uint8)
BODY_NEAR = np.array([70, 200, 110], np.uint8)
BODY_FAR = np.array([30, 95, 60], np.uint8)


def to_text(config: SnakeConfig, state: SnakeState) -> str:
    """The board as text: ``#`` walls (the border and any inside the board), ``o`` body,
    ``^>v<`` the head, ``*`` food."""
    body = board(config, state)
    rows, cols = body.shape
    chars = np.full((rows, cols), ".", dtype="<U1")
    chars[body > 0] = "o"
    chars[body < 0] = "#"
    food_row, food_col = (int(v) for v in np.asarray(state.food))
    chars[food_row, food_col] = "*"
    head_row, head_col = (int(v) for v in np.asarray(state.head))
    chars[head_row, head_col] = HEAD_GLYPHS[int(state.heading)]
    border = "#" * (cols + 2)
    lines = [border, *("#" + "".join(row) + "#" for row in chars), border]
    return "\n".join(lines)


def to_rgb(config: SnakeConfig, state: SnakeState, cell_pixels: int = 16) -> np.ndarray:
    """The board as an RGB image, uint8[(rows + 2) * cell_pixels, (cols + 2) * cell_pixels, 3].

    The body fades from bright at the neck to dark at the tail, so the direction of travel
    is visible in a still frame; walls inside the board have the border's colour.
    """
    body = board(config, state)
    rows, cols = body.shape
    length = max(int(state.length), 1)
    cells = np.broadcast_to(WALL, (rows + 2, cols + 2, 3)).copy()
    cells[1:-1, 1:-1] = BACKGROUND
    fraction = (body / length)[..., None]  # 1 at the head, 1/length at the tail
    shade = (BODY_FAR + fraction * (BODY_NEAR.astype(float) - BODY_FAR)).astype(np.uint8)
    cells[1:-1, 1:-1][body > 0] = shade[body > 0]
    cells[1:-1, 1:-1][body < 0] = WALL
    food_row, food_col = (int(v) for v in np.asarray(state.food))
    cells[food_row + 1, food_col + 1] = FOOD
    head_row, head_col = (int(v) for v in np.asarray(state.head))
    cells[head_row + 1, head_col + 1] = HEAD
    image = np.repeat(np.repeat(cells, cell_pixels, axis=0), cell_pixels, axis=1)
    if cell_pixels >= 4:  # thin grid lines between cells
        inner = image[cell_pixels:-cell_pixels, cell_pixels:-cell_pixels]
        empty = np.all(inner == BACKGROUND, axis=-1)
        line = np.zeros(inner.shape[:2], bool)
        line[::cell_pixels, :] = True
        line[:, ::cell_pixels] = True
        inner[line & empty] = GRID_LINE
    return image


def save_gif(
    config: SnakeConfig,
    states: Sequence[SnakeState],
    path: str | Path | BinaryIO,
    cell_pixels: int = 16,
    frame_ms: int = 80,
) -> str | Path | BinaryIO:
    """Write ``states`` (one per frame) as an animated, looping GIF to a path or a binary
    file object, and return it."""
    if not states:
        raise ValueError("states: need at least one state to make a GIF")
    frames = [Image.fromarray(to_rgb(config, state, cell_pixels)) for state in states]
    target = Path(path) if isinstance(path, str | Path) else path
    frames[0].save(
        target, format="GIF", save_all=True, append_images=frames[1:], duration=frame_ms, loop=0, optimize=False
    )
    return target


def describe(config: SnakeConfig) -> str:
    """A one-line description of a configuration, for titles and logs (its obstacles and
    levels too, where the world has them)."""
    text = (
        f"Snake {config.rows}x{config.cols}, start length {config.initial_length}, "
        f"{config.action_mode} actions, {config.observation} observations"
    )
    if config.obstacle_density > 0:
        text += f", obstacle density {config.obstacle_density:g}"
    if config.levels:
        first, last = config.level_seed_offset, config.level_seed_offset + config.levels - 1
        text += f", {config.levels} level{'s' if config.levels > 1 else ''} (seeds {first}..{last})"
    elif config.has_levels:
        text += ", a new level each episode"
    return text
