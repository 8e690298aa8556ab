"""Speed of DQN training: env steps per second of regspeed's DQN and of Stable-Baselines3's.

Measured in one run on this machine with the default DQN configuration (10 x 10,
``features`` observations, a 128 x 128 ReLU MLP, 16 envs x 4 steps per update, 2 gradient
steps of 128 per update, 50 k replay, 3-step returns):

1. our env steps/s for 1 run and the aggregate for 8 vmapped runs (compilation excluded,
   after ``learning_starts``, so every update learns);
2. SB3 DQN with the same settings (``train_freq`` 4 vector steps, ``gradient_steps`` 2,
   batch 128, buffer 50 k, ``n_steps`` 3, target copy every 6,400 env steps, same network)
   on our environment, stepped in one call per step (``sb3_vec_env.SnakeSB3VecEnv``), in its
   best use of the cores (one process with all threads, or one single-threaded process per
   core), with the share of its time spent stepping the environment. Target: >= 20x;
3. FLOPs per env step (matrix products, from the layer shapes) and the dense-matmul
   FLOP/s of this machine on the same shapes, measured in the same run: the env steps/s
   that even a learner at the matmul peak could reach at this replay ratio.

    .venv/bin/python benchmarks/dqn_throughput.py
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import jax
import jax.numpy as jnp
import sb3_compare
import throughput
from rich.console import Console
from rich.table import Table

import regspeed  # noqa: F401  (sets XLA flags before JAX starts)
from regspeed.learn import dqn, registry
from regspeed.learn.learner import Request

LEARNER = registry.get("snake-dqn")
SETUP = LEARNER.build({}, Request(budget=100_000 * dqn.DQNConfig().steps_per_update))
CONFIG = SETUP.config


def ours(seeds: int, updates: int, repeats: int) -> float:
    """Aggregate env steps/s of ``seeds`` vmapped runs (best of ``repeats``), learning every update."""
    carry = LEARNER.start(SETUP, range(seeds), [0.0] * seeds)
    warm = -(-CONFIG.learning_starts // CONFIG.steps_per_update)  # fill past learning_starts
    carry, _ = dqn.advance_batch(CONFIG, carry, warm)
    return throughput.advance_rate(dqn.advance_batch, CONFIG, carry, updates, repeats)


def flops_per_env_step() -> float:
    """Matrix-product FLOPs of training per env step, counted from the layer shapes.

    Acting runs the Q-network once per env step; each sampled transition costs a forward
    and backward pass (about three forwards) at the observed state, an online forward at
    the next state (Double DQN's action choice) and a target forward there.
    """
    params = dqn.network(CONFIG).init(jax.random.key(0), jnp.zeros(CONFIG.env.observation_shape))["params"]
    samples_per_step = CONFIG.gradient_steps * CONFIG.batch_size / CONFIG.steps_per_update
    return 2.0 * throughput.dense_macs(params) * (1 + 5 * samples_per_step)


def _sb3_worker(threads: int, timesteps: int, queue: Any) -> None:
    import torch
    from sb3_vec_env import SnakeSB3VecEnv
    from stable_baselines3 import DQN

    torch.set_num_threads(threads)
    env = SnakeSB3VecEnv(CONFIG.num_envs, rows=CONFIG.env.rows, cols=CONFIG.env.cols, observation="features")
    model = DQN(
        "MlpPolicy",
        env,
        learning_rate=dqn.DEFAULT_LEARNING_RATE,
        buffer_size=CONFIG.buffer_size,
        learning_starts=CONFIG.learning_starts,
        batch_size=CONFIG.batch_size,
        gamma=CONFIG.gamma,
        train_freq=CONFIG.rollout_steps,
        gradient_steps=CONFIG.gradient_steps,
        target_update_interval=CONFIG.target_update_every * CONFIG.steps_per_update,
        exploration_fraction=CONFIG.exploration_fraction,
        exploration_final_eps=CONFIG.epsilon_end,
        max_grad_norm=CONFIG.max_grad_norm,
        n_steps=CONFIG.n_step,
        policy_kwargs={"net_arch": list(CONFIG.network.hidden), "activation_fn": torch.nn.ReLU},
        device="cpu",
        verbose=0,
    )
    sb3_compare.timed_learn(model, env, CONFIG.learning_starts + CONFIG.steps_per_update, timesteps, queue)


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=200, help="DQN updates per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sb3-steps", type=int, default=10_000)
    args = parser.parse_args()
    console = Console()
    cores = os.cpu_count() or 1
    console.print(
        f"DQN on Snake {CONFIG.env.rows}x{CONFIG.env.cols} {CONFIG.env.observation}, MLP {CONFIG.network.hidden}, "
        f"{CONFIG.num_envs} envs x {CONFIG.rollout_steps} steps, {CONFIG.gradient_steps} x {CONFIG.batch_size} "
        f"per update; jax {jax.__version__} on {jax.devices()[0].platform}, {cores} cores"
    )
    widths = [CONFIG.env.observation_shape[0], *CONFIG.network.hidden, CONFIG.env.num_actions]
    peak_before = throughput.matmul_flops_per_second(CONFIG.batch_size, widths, args.repeats)
    one = ours(1, args.updates, args.repeats)
    eight = ours(8, args.updates, args.repeats)
    table = Table(title="DQN training throughput (best of repeats, compilation excluded)")
    for column in ("what", "env steps/s", "ratio", "notes"):
        table.add_column(column, justify="left" if column in ("what", "notes") else "right")
    table.add_row("regspeed DQN, 1 run", f"{one:,.0f}", "1.00x", "baseline of this table")
    table.add_row("regspeed DQN, 8 vmapped runs (aggregate)", f"{eight:,.0f}", f"{eight / one:.2f}x", "one program")
    flops_per_step = flops_per_env_step()
    peak = max(peak_before, throughput.matmul_flops_per_second(CONFIG.batch_size, widths, args.repeats))  # both ends
    ceiling = throughput.add_rows(table, flops_per_step, peak, one, eight)
    sb3_compare.add_rows(table, "DQN", _sb3_worker, (args.sb3_steps,), one, eight, 20, ceiling)
    console.print(table)


if __name__ == "__main__":
    main()
