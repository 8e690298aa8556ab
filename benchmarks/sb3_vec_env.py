"""A Stable-Baselines3 ``VecEnv`` over regspeed's batched Snake (benchmark helper).

SB3's own ``DummyVecEnv`` steps each ``gymnasium.Env`` from Python, one JAX call per
environment per step. This steps all of them in one compiled call
(:class:`regspeed.envs.gym.SnakeVectorEnv`), so the comparison with SB3 measures its
learner, not a slow environment path. SB3's auto-reset convention matches ours: the
returned observation is the next episode's first, ``infos[i]["terminal_observation"]``
the one reached, and ``TimeLimit.truncated`` marks truncations.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from regspeed.envs.gym import SnakeVectorEnv


class SnakeSB3VecEnv(VecEnv):
    """``num_envs`` Snake games for SB3, stepped together; counts its own stepping time."""

    def __init__(self, num_envs: int, seed: int = 0, **snake_kwargs: Any) -> None:
        self.vector = SnakeVectorEnv(num_envs=num_envs, **snake_kwargs)
        super().__init__(num_envs, self.vector.single_observation_space, self.vector.single_action_space)
        self._seed = seed
        self._actions: np.ndarray | None = None
        self.env_seconds = 0.0  # time spent inside reset/step of the environment

    def reset(self) -> np.ndarray:
        start = time.perf_counter()
        observation, _ = self.vector.reset(seed=self._seed)
        self.env_seconds += time.perf_counter() - start
        return observation

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        start = time.perf_counter()
        observation, reward, terminated, truncated, info = self.vector.step(self._actions)
        done = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(done):
            infos[i] = {
                "terminal_observation": info["final_obs"][i],
                "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                "episode": {"r": float(info["episode"]["score"][i]), "l": int(info["episode"]["steps"][i])},
            }
        self.env_seconds += time.perf_counter() - start
        return observation, reward.astype(np.float32), done, infos

    def close(self) -> None:
        self.vector.close()

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self.vector, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self.vector, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kwargs: Any) -> list[Any]:
        return [getattr(self.vector, method_name)(*args, **kwargs)] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))

    def seed(self, seed: int | None = None) -> list[int | None]:
        self._seed = seed or 0
        return [seed] * self.num_envs
