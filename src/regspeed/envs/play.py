"""Reference policies and batched play: the floor a learning agent must beat.

Two policies that need no training: ``random`` (uniform actions) and ``greedy`` (move
towards the food among the moves that do not die at once, into the board's edge, a wall
inside it or the body; else straight on). Playing
either over a batch of environments gives per-episode statistics comparable with a
trainer's, so a learning curve can be read against them.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from regspeed.envs import snake

POLICIES = ("random", "greedy")


def random_action(config: snake.SnakeConfig, state: snake.SnakeState, key: jax.Array) -> jax.Array:
    """A uniformly random action."""
    del state
    return jax.random.randint(key, (), 0, config.num_actions)


def greedy_action(config: snake.SnakeConfig, state: snake.SnakeState, key: jax.Array) -> jax.Array:
    """The action whose next cell is safe (not the edge, a wall or the body) and closest to
    the food (ties: random)."""
    actions = jnp.arange(config.num_actions)
    headings = jax.vmap(lambda a: snake.next_heading(config, state.heading, a))(actions)
    targets = state.head + jnp.asarray(snake.DELTAS)[headings]
    unsafe = snake.is_blocked(config, state.body, targets)
    distance = jnp.abs(targets - state.food).sum(-1).astype(jnp.float32)
    tie_break = jax.random.uniform(key, (config.num_actions,), maxval=0.5)
    score = jnp.where(unsafe, 1e6, distance + tie_break)
    return jnp.argmin(score)


@dataclasses.dataclass(frozen=True)
class PlaySummary:
    """Statistics of the episodes that ended during a batched play."""

    episodes: int
    mean_score: float
    max_score: int
    mean_length: float
    mean_steps: float
    causes: dict[str, int]  # cause name -> number of episodes
    env_steps: int


@functools.partial(jax.jit, static_argnums=(0, 1, 3, 4))
def _play(config: snake.SnakeConfig, policy: str, key: jax.Array, num_envs: int, num_steps: int):
    act = random_action if policy == "random" else greedy_action
    reset_key, play_key = jax.random.split(key)
    states = snake.reset_batch(config, reset_key, num_envs)

    def step(carry, step_key):
        states, totals = carry
        keys = jax.random.split(step_key, num_envs)
        actions = jax.vmap(lambda s, k: act(config, s, k))(states, keys)
        first_env = jax.tree.map(lambda x: x[0], states)
        states, ts = jax.vmap(lambda s, a: snake.autoreset_step(config, s, a, final_observation=False))(states, actions)
        done = ts.terminated | ts.truncated
        causes = jnp.zeros(len(snake.Cause), jnp.int32).at[ts.cause].add(done.astype(jnp.int32))
        totals = {
            "episodes": totals["episodes"] + done.sum(),
            "score": totals["score"] + jnp.where(done, ts.episode_score, 0).sum(),
            "max_score": jnp.maximum(totals["max_score"], jnp.where(done, ts.episode_score, 0).max()),
            "length": totals["length"] + jnp.where(done, ts.episode_length, 0).sum(),
            "steps": totals["steps"] + jnp.where(done, ts.episode_steps, 0).sum(),
            "causes": totals["causes"] + causes,
        }
        return (states, totals), (first_env, done[0])

    zero = jnp.zeros((), jnp.int32)
    totals = {
        "episodes": zero,
        "score": zero,
        "max_score": zero,
        "length": zero,
        "steps": zero,
        "causes": jnp.zeros(len(snake.Cause), jnp.int32),
    }
    (_, totals), (first_env_states, first_env_done) = jax.lax.scan(
        step, (states, totals), jax.random.split(play_key, num_steps)
    )
    return totals, first_env_states, first_env_done


def play(
    config: snake.SnakeConfig, policy: str, seed: int, num_envs: int, num_steps: int
) -> tuple[PlaySummary, list[snake.SnakeState]]:
    """Play ``policy`` in ``num_envs`` environments for ``num_steps`` steps each.

    Returns the summary of the episodes that ended and the states of the first
    environment's first episode (for a GIF or a terminal replay).
    """
    if policy not in POLICIES:
        raise snake.ConfigError("policy", f"must be one of {', '.join(POLICIES)} (got {policy!r})")
    if num_envs < 1:
        raise snake.ConfigError("envs", f"must be a positive integer (got {num_envs})")
    if num_steps < 1:
        raise snake.ConfigError("steps", f"must be a positive integer (got {num_steps})")
    totals, first_states, first_done = _play(config, policy, jax.random.key(seed), num_envs, num_steps)
    totals = jax.device_get(totals)
    episodes = int(totals["episodes"])
    per_episode = max(episodes, 1)
    summary = PlaySummary(
        episodes=episodes,
        mean_score=int(totals["score"]) / per_episode,
        max_score=int(totals["max_score"]),
        mean_length=int(totals["length"]) / per_episode,
        mean_steps=int(totals["steps"]) / per_episode,
        causes={cause.name.lower(): int(totals["causes"][cause]) for cause in snake.Cause if cause},
        env_steps=num_envs * num_steps,
    )
    return summary, first_episode(first_states, first_done)


def first_episode(states: snake.SnakeState, done: jax.Array) -> list[snake.SnakeState]:
    """The states (stacked over time) up to and including the step where ``done`` first
    holds, as a list (all of them if it never does)."""
    done = np.asarray(done)
    end = int(np.argmax(done)) + 1 if done.any() else len(done)
    states = jax.device_get(states)
    return [jax.tree.map(lambda x, t=t: x[t], states) for t in range(end)]
