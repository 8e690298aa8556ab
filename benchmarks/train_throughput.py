"""Speed of PPO training: env steps per second, FLOP efficiency, and Stable-Baselines3.

Measured in one run on this machine, for the default configuration (10 x 10, window
observations, two 128 x 128 ReLU MLPs, 64 envs x 128 steps, 4 epochs of 4 minibatches):

1. our env steps/s for 1 run and the aggregate for 8 vmapped runs (compilation excluded);
2. FLOPs per env step (matrix products counted from the layer shapes; XLA's cost analysis
   counts a loop body once, so it cannot be used) and the fraction of this machine's
   dense-matmul FLOP/s, measured here with matmuls of the network's shapes;
3. Stable-Baselines3 PPO with the same sizes on our environment (stepped in one call per
   step through ``sb3_vec_env.SnakeSB3VecEnv``), in its best use of the cores: one process
   using all threads, or one single-threaded process per core (aggregate); and the share
   of SB3's time spent stepping the environment. SB3 and a CPU build of torch come with
   the ``bench`` extra (``make bench``); without them, part 3 is skipped.

    .venv/bin/python benchmarks/train_throughput.py
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
from regspeed.learn import ppo, registry
from regspeed.learn.learner import Request, Setup

LEARNER = registry.get("snake-ppo")


def make_setup(observation: str) -> Setup:
    """The default PPO setup with the given observation (the window sees the board), 10,000 updates long."""
    return LEARNER.build({"env": {"observation": observation}}, Request(budget=10_000 * ppo.PPOConfig().batch_size))


SETUP = make_setup("window")
CONFIG = SETUP.config
HIDDEN = CONFIG.network.hidden


def ours(seeds: int, updates: int, repeats: int) -> float:
    """Aggregate env steps/s of ``seeds`` vmapped runs (best of ``repeats``)."""
    carry = LEARNER.start(SETUP, range(seeds), [0.0] * seeds)
    return throughput.advance_rate(LEARNER.trainer.advance_batch, CONFIG, carry, updates, repeats)


def flops_per_env_step() -> float:
    """Matrix-product FLOPs of training per env step, counted from the layer shapes.

    Acting runs the policy network once per step; the values of the observed and of the
    reached states are one value-network pass each; each epoch runs both networks forward
    and backward (about twice the forward's products) on every transition.
    """
    params = ppo.network(CONFIG).init(jax.random.key(0), jnp.zeros(CONFIG.env.observation_shape))["params"]
    policy, value = throughput.dense_macs(params["policy"]), throughput.dense_macs(params["value"])
    per_step = policy + 2 * value + CONFIG.epochs * 3 * (policy + value)
    return 2.0 * per_step


def _sb3_worker(threads: int, observation: str, timesteps: int, queue: Any) -> None:
    global SETUP, CONFIG
    SETUP = make_setup(observation)
    CONFIG = SETUP.config
    import torch
    from sb3_vec_env import SnakeSB3VecEnv
    from stable_baselines3 import PPO

    torch.set_num_threads(threads)
    env = SnakeSB3VecEnv(
        CONFIG.num_envs, rows=CONFIG.env.rows, cols=CONFIG.env.cols, observation=CONFIG.env.observation,
        window_size=CONFIG.env.window_size,
    )  # fmt: skip
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=CONFIG.rollout_steps,
        batch_size=CONFIG.batch_size // CONFIG.minibatches,
        n_epochs=CONFIG.epochs,
        learning_rate=1e-3,
        policy_kwargs={"net_arch": {"pi": list(HIDDEN), "vf": list(HIDDEN)}, "activation_fn": torch.nn.ReLU},
        device="cpu",
        verbose=0,
    )
    sb3_compare.timed_learn(model, env, CONFIG.steps_per_update, timesteps, queue)


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=3, help="PPO updates per timed call")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sb3-updates", type=int, default=3)
    parser.add_argument("--observation", default="window", help="window (default config) or features")
    args = parser.parse_args()
    global SETUP, CONFIG
    SETUP = make_setup(args.observation)
    CONFIG = SETUP.config
    console = Console()
    cores = os.cpu_count() or 1
    console.print(
        f"PPO on Snake {CONFIG.env.rows}x{CONFIG.env.cols} {CONFIG.env.observation} {CONFIG.env.window_size}, "
        f"MLPs {HIDDEN}, {CONFIG.num_envs} envs x {CONFIG.rollout_steps} steps, {CONFIG.epochs} epochs x "
        f"{CONFIG.minibatches} minibatches; jax {jax.__version__} on {jax.devices()[0].platform}, {cores} cores"
    )
    rows = CONFIG.batch_size // CONFIG.minibatches
    widths = [CONFIG.env.observation_shape[0], *HIDDEN]
    peak_before = throughput.matmul_flops_per_second(rows, widths, args.repeats)
    one = ours(1, args.updates, args.repeats)
    eight = ours(8, args.updates, args.repeats)
    flops_per_step = flops_per_env_step()
    peak = max(peak_before, throughput.matmul_flops_per_second(rows, widths, args.repeats))  # before and after
    table = Table(title="training throughput (best of repeats, compilation excluded)")
    for column in ("what", "env steps/s", "ratio", "notes"):
        table.add_column(column, justify="left" if column in ("what", "notes") else "right")
    table.add_row("regspeed PPO, 1 run", f"{one:,.0f}", "1.00x", "baseline of this table")
    group = CONFIG.vmap_group or "all 8"
    notes = f"one program, vmapped {group} at a time"
    table.add_row("regspeed PPO, 8 runs (aggregate)", f"{eight:,.0f}", f"{eight / one:.2f}x", notes)
    ceiling = throughput.add_rows(table, flops_per_step, peak, one, eight)
    sb3_compare.add_rows(
        table, "PPO", _sb3_worker, (CONFIG.env.observation, args.sb3_updates * CONFIG.steps_per_update), one, eight, 5,
        ceiling,
    )  # fmt: skip
    console.print(table)


if __name__ == "__main__":
    main()
