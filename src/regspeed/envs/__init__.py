"""Environments: the Snake world (pure JAX), its rendering and its Gymnasium adapters."""

from regspeed.envs.snake import Cause, SnakeConfig, SnakeState, TimeStep, autoreset_step, observe, reset, step

__all__ = ["Cause", "SnakeConfig", "SnakeState", "TimeStep", "autoreset_step", "observe", "reset", "step"]
