"""The Gymnasium adapters and the renderers."""

from __future__ import annotations

import gymnasium
import jax
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from PIL import Image

import regspeed
from regspeed.envs import render, snake
from regspeed.envs.gym import SnakeEnv, SnakeVectorEnv


@pytest.mark.parametrize("observation", snake.OBSERVATIONS)
def test_env_passes_gymnasium_check_env(observation: str) -> None:
    env = gymnasium.make(regspeed.ENV_ID, rows=6, cols=6, observation=observation, render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=False)


def test_env_is_registered_and_takes_kwargs() -> None:
    env = gymnasium.make(regspeed.ENV_ID, rows=5, cols=8, action_mode="absolute", render_mode="ansi")
    obs, info = env.reset(seed=3)
    assert obs.shape == (3, 5, 8) and env.action_space.n == 4
    assert info["action_mask"].sum() == 3 and info["cause"] == "running"
    text = env.render()
    lines = text.splitlines()
    assert len(lines) == 7 and all(len(line) == 10 for line in lines)
    assert sum(line.count(g) for line in lines for g in render.HEAD_GLYPHS) == 1


def test_env_bad_kwarg_is_one_clear_error() -> None:
    with pytest.raises(snake.ConfigError, match=r"^rows: must be an integer between 4 and 64 \(got 2\)$"):
        gymnasium.make(regspeed.ENV_ID, rows=2)


def test_env_episode_runs_to_an_end_and_seeds_reproduce() -> None:
    def play(seed: int) -> list[tuple]:
        env = SnakeEnv(rows=5, cols=5)
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        trace = []
        for _ in range(500):
            obs, reward, terminated, truncated, info = env.step(int(rng.integers(3)))
            trace.append((obs.tobytes(), reward, terminated, truncated, info["score"]))
            if terminated or truncated:
                assert info["cause"] in {"wall", "body", "starved", "time_limit", "won"}
                return trace
        raise AssertionError("a random 5 x 5 snake should end an episode within 500 steps")

    assert play(7) == play(7)
    assert play(7) != play(8)


def test_vector_env_steps_batch_with_same_step_reset() -> None:
    vec = SnakeVectorEnv(num_envs=16, rows=4, cols=4, initial_length=2, observation="features")
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (16, 11) and vec.observation_space.shape == (16, 11)
    ended = 0
    rng = np.random.default_rng(0)
    for _ in range(60):
        actions = rng.integers(3, size=16)
        obs, rewards, terminated, truncated, info = vec.step(actions)
        done = terminated | truncated
        assert rewards.shape == (16,) and obs.dtype == np.float32
        np.testing.assert_array_equal(info["_final_obs"], done)
        np.testing.assert_array_equal(info["final_obs"][~done], obs[~done])
        if done.any():
            assert (info["episode"]["cause"][done] != snake.Cause.RUNNING).all()
            assert (info["episode"]["length"][done] == info["episode"]["score"][done] + 2).all()
        ended += int(done.sum())
    assert ended > 0


def test_vector_env_made_through_gymnasium() -> None:
    vec = gymnasium.make_vec(regspeed.ENV_ID, num_envs=4, vectorization_mode="vector_entry_point", rows=6, cols=6)
    obs, _ = vec.reset(seed=1)
    again = SnakeVectorEnv(num_envs=4, rows=6, cols=6)
    np.testing.assert_array_equal(obs, again.reset(seed=1)[0])
    assert vec.metadata["autoreset_mode"] == gymnasium.vector.AutoresetMode.SAME_STEP


def test_text_and_rgb_frames_show_the_state() -> None:
    config = snake.SnakeConfig(rows=6, cols=7)
    state = snake.reset(config, jax.random.key(2))
    text = render.to_text(config, state).splitlines()
    head, food = np.asarray(state.head), np.asarray(state.food)
    assert text[head[0] + 1][head[1] + 1] == render.HEAD_GLYPHS[int(state.heading)]
    assert text[food[0] + 1][food[1] + 1] == "*"
    assert sum(line.count("o") for line in text) == config.initial_length - 1
    frame = render.to_rgb(config, state, cell_pixels=8)
    assert frame.shape == (8 * 8, 9 * 8, 3) and frame.dtype == np.uint8
    centre = lambda cell: frame[(cell[0] + 1) * 8 + 4, (cell[1] + 1) * 8 + 4]  # noqa: E731
    np.testing.assert_array_equal(centre(head), render.HEAD)
    np.testing.assert_array_equal(centre(food), render.FOOD)


def test_gif_has_one_frame_per_state(tmp_path) -> None:
    config = snake.SnakeConfig(rows=5, cols=5)
    state = snake.reset(config, jax.random.key(0))
    states = [state]
    for action in (0, 1, 2, 0):
        state, _ = snake.autoreset_step(config, state, action)
        states.append(state)
    path = render.save_gif(config, states, tmp_path / "snake.gif", cell_pixels=6)
    with Image.open(path) as gif:
        assert gif.n_frames == len(states)
        assert gif.size == (7 * 6, 7 * 6)


LEVELS = {"levels": 5, "obstacle_density": 0.1, "level_seed_offset": 3}


def _walls(body: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The wall mask (cells of lifetime ``snake.WALL``) of a body array, reshaped."""
    return (np.asarray(body) == snake.WALL).reshape(shape)


@pytest.mark.parametrize("observation", snake.OBSERVATIONS)
def test_env_with_levels_passes_check_env_and_shows_walls(observation: str) -> None:
    """``gymnasium.make`` with the level kwargs: check_env passes, episodes play training
    levels only, the grid's wall channel is the board's walls, and the text render draws them."""
    env = gymnasium.make(regspeed.ENV_ID, observation=observation, render_mode="ansi", **LEVELS)
    check_env(env.unwrapped, skip_render_check=False)
    unwrapped = env.unwrapped
    assert unwrapped.config.has_levels and unwrapped.config.levels == 5
    walls_seen = 0
    for seed in range(6):
        obs, _ = env.reset(seed=seed)
        state = unwrapped._state
        assert 3 <= int(state.level) <= 7
        walls = _walls(state.body, (10, 10))
        walls_seen += int(walls.sum())
        if observation == "grid":
            assert obs.shape == (4, 10, 10)
            np.testing.assert_array_equal(obs[3] > 0, walls)
        inside = [line[1:-1] for line in env.render().splitlines()[1:-1]]
        np.testing.assert_array_equal(np.array([list(line) for line in inside]) == "#", walls)
    assert walls_seen > 0


def test_vector_env_with_levels_keeps_to_the_training_levels_and_shows_walls() -> None:
    """SnakeVectorEnv on training levels: every episode, fresh ones included, plays a level
    of the set, and the observation's wall channel is that level's walls."""
    config = snake.SnakeConfig(rows=5, cols=5, initial_length=2, **LEVELS)
    vec = SnakeVectorEnv(num_envs=8, config=config, render_mode="rgb_array")
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (8, 4, 5, 5) == vec.observation_space.shape
    level_walls = jax.jit(jax.vmap(lambda level: snake.level_walls(config, level)))
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(40):
        levels = np.asarray(vec._states.level)
        assert ((levels >= 3) & (levels <= 7)).all()
        np.testing.assert_array_equal(obs[:, 3] > 0, np.asarray(level_walls(levels)).reshape(8, 5, 5))
        obs, _, terminated, truncated, _ = vec.step(rng.integers(3, size=8))
        ended += int((terminated | truncated).sum())
    assert ended > 0
    frames = vec.render()
    assert len(frames) == 8 and frames[0].shape == (7 * 16, 7 * 16, 3)


def test_text_and_rgb_frames_show_walls_inside_the_board() -> None:
    """``to_text`` draws every wall inside the board as ``#`` and nothing else so;
    ``to_rgb`` paints every wall cell the WALL colour."""
    config = snake.SnakeConfig(rows=6, cols=7, obstacle_density=0.25, levels=1)
    state = snake.reset_to_level(config, 4, jax.random.key(0))
    walls = _walls(state.body, (6, 7))
    assert walls.sum() >= 6  # a full lattice: 6, 9 or 12 walls
    text = render.to_text(config, state).splitlines()
    inside = np.array([list(line[1:-1]) for line in text[1:-1]])
    np.testing.assert_array_equal(inside == "#", walls)
    frame = render.to_rgb(config, state, cell_pixels=8)
    centres = frame[8 + 4 :: 8, 8 + 4 :: 8][:6, :7]
    np.testing.assert_array_equal((centres == render.WALL).all(-1), walls)
    assert (centres == render.BACKGROUND).all(-1).sum() == 6 * 7 - walls.sum() - config.initial_length - 1


def test_describe_mentions_obstacles_and_levels() -> None:
    """The one-line description names the obstacle density and the levels where there are some."""
    plain = render.describe(snake.SnakeConfig())
    assert plain == "Snake 10x10, start length 3, relative actions, grid observations"
    assert render.describe(snake.SnakeConfig(**LEVELS)) == plain + ", obstacle density 0.1, 5 levels (seeds 3..7)"
    assert render.describe(snake.SnakeConfig(levels=1)) == plain + ", 1 level (seeds 0..0)"
    random_levels = render.describe(snake.SnakeConfig(obstacle_density=0.25))
    assert random_levels == plain + ", obstacle density 0.25, a new level each episode"
