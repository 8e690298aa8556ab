"""Double DQN: n-step targets by hand, exploration schedule, learning, bad input (the learner
contract, resume and failures are in test_learners.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny
from conftest import leaves_equal

from regspeed.envs import snake
from regspeed.errors import ConfigError
from regspeed.learn import dqn, nets, registry
from regspeed.learn import driver as training
from regspeed.learn import regularizers as regs

TINY = tiny.setup("snake-dqn").config  # l2, run here at strength 0
TRAINER = registry.get("snake-dqn").trainer


def batch_hparams(runs: int, learning_rate: float = 5e-4, strength: float = 0.0) -> dqn.Hparams:
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (runs,)), dqn.hparams(learning_rate, strength))


def test_n_step_targets_by_hand() -> None:
    config = dataclasses.replace(TINY, num_envs=1, buffer_size=8, batch_size=1, n_step=3, gamma=0.5)
    rows = config.buffer_rows
    reward = jnp.asarray([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 0.0, 0.0])[:, None]
    terminated = jnp.zeros((rows, 1), bool).at[4].set(True)  # step 4 dies
    done = terminated.at[1].set(True)  # step 1 is truncated (starvation)
    reached = jnp.arange(rows, dtype=jnp.float32)[:, None, None] * jnp.ones((1, 1, 11))
    replay = dqn.Replay(
        observation=reached - 100,
        action=jnp.zeros((rows, 1), jnp.int32),
        reward=reward,
        terminated=terminated,
        done=done,
        reached=reached,
        position=jnp.asarray(rows - 1, jnp.int32),
        filled=jnp.asarray(rows - 1, jnp.int32),
    )
    starts = jnp.asarray([0, 1, 2, 3])
    out = dqn.n_step_targets(config, replay, starts, jnp.zeros(4, jnp.int32))
    # from 0: 1 + 0.5 * 2, stops at the truncation at 1, bootstraps from reached[1] with 0.5^2
    # from 1: 2, truncated at once, bootstraps from reached[1] with 0.5
    # from 2: 4 + 0.5 * 8 + 0.25 * 16, terminated at 4: no bootstrap
    # from 3: 8 + 0.5 * 16, terminated at 4: no bootstrap
    np.testing.assert_allclose(out["return"], [2.0, 2.0, 12.0, 16.0])
    np.testing.assert_allclose(out["discount"], [0.25, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(out["bootstrap"][:, 0], [1.0, 1.0, 4.0, 4.0])
    # a full n steps without an episode end bootstraps from the n-th reached state with gamma^n
    free = replay.replace(terminated=jnp.zeros_like(terminated), done=jnp.zeros_like(done))
    out = dqn.n_step_targets(config, free, jnp.asarray([2]), jnp.zeros(1, jnp.int32))
    np.testing.assert_allclose(out["return"], [4.0 + 4.0 + 4.0])
    np.testing.assert_allclose(out["discount"], [0.125])
    np.testing.assert_allclose(out["bootstrap"][:, 0], [4.0])


def test_epsilon_decays_linearly_then_stays() -> None:
    config = dataclasses.replace(TINY, total_updates=100, exploration_fraction=0.5, epsilon_start=1.0, epsilon_end=0.1)
    values = [float(dqn.epsilon(config, jnp.asarray(u))) for u in (0, 25, 50, 99)]
    np.testing.assert_allclose(values, [1.0, 0.55, 0.1, 0.1], rtol=1e-6)


@pytest.fixture(scope="module")
def advanced() -> tuple:
    carry = dqn.init_batch(TINY, dqn.run_keys([0, 1]), batch_hparams(2))
    carry, history = training.train(TRAINER, TINY, carry, 10, chunk=2)  # chunks of 2: test_learners' program
    return carry, history.updates


def test_learns_only_after_learning_starts_and_copies_the_target(advanced: tuple) -> None:
    carry, metrics = advanced
    np.testing.assert_array_equal(metrics["env_steps"][0], np.arange(1, 11) * TINY.steps_per_update)
    # 8 env steps per update: learning starts once 32 are stored, i.e. from the 4th update
    learned = np.isfinite(np.asarray(metrics["q_loss"]))
    np.testing.assert_array_equal(learned[0], np.arange(1, 11) >= 4)
    assert int(carry.replay.filled[0]) == 10 * TINY.rollout_steps
    assert not leaves_equal(carry.params, carry.init_params)
    # hard target copies every 5 updates: at update 10 the target equals the online network
    assert leaves_equal(carry.target_params, carry.params)


@pytest.mark.slow
def test_learns_on_a_small_board() -> None:
    config = dataclasses.replace(
        TINY,
        num_envs=8,
        rollout_steps=4,
        total_updates=500,
        learning_starts=500,
        buffer_size=8192,
        batch_size=64,
        network=nets.NetworkConfig(hidden=(64,)),
    )
    carry = dqn.init_batch(config, dqn.run_keys([0, 1]), batch_hparams(2, 1e-3))
    before = dqn.evaluate_batch(config, carry)["eval_score"]
    carry, _ = dqn.advance_batch(config, carry, 500)  # 16,000 env steps
    after = dqn.evaluate_batch(config, carry)["eval_score"]
    assert float(before.max()) == 0.0 and float(after.min()) >= 2.0, (before, after)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"buffer_size": 8}, "buffer_size"),
        ({"buffer_size": 16, "n_step": 4}, "buffer_size"),
        ({"epsilon_end": 1.5}, "epsilon_end"),
        ({"epsilon_start": -0.1}, "epsilon_start"),
        ({"tau": 0.0}, "tau"),
        ({"n_step": 0}, "n_step"),
        ({"regularizer": regs.Regularizer("l2", network="policy")}, "reg_network"),
        ({"env": snake.SnakeConfig(observation="features"), "network": nets.NetworkConfig(torso="cnn")}, "torso"),
    ],
)
def test_bad_settings_name_the_option(change: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        dataclasses.replace(TINY, **change)
    assert caught.value.field == field


@pytest.mark.slow
def test_train_command_runs_dqn(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from regspeed.cli import app

    arguments = ["train", "--algo", "dqn", "--rows", "6", "--cols", "6", "--hidden", "16", "--num-envs", "4"]
    arguments += ["--rollout-steps", "2", "--steps", "400", "--eval-every", "25", "--out", str(tmp_path)]
    arguments += ["--action-mode", "absolute", "--layer-norm"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "DQN, none" in result.output and "absolute actions" in result.output
    header = (tmp_path / "curve.csv").read_text().splitlines()[0]
    assert "q_loss" in header and "epsilon" in header and "feature_srank" in header
    assert json.loads((tmp_path / "config.json").read_text())["network"]["layer_norm"] is True
    bad = CliRunner().invoke(app, ["train", "--algo", "dqn", "--reg", "l2", "--reg-network", "policy"])
    assert bad.exit_code == 2 and "reg_network: DQN has one network (the Q-network); use all" in bad.output
    unknown = CliRunner().invoke(app, ["train", "--algo", "sarsa"])
    assert unknown.exit_code == 2 and "algo: must be one of ppo, dqn" in unknown.output


DQN_SPEC = """
name = "dqn"
task = "snake-dqn"
seeds = 2
budget = 640
[config.env]
rows = 6
cols = 6
[config.dqn]
buffer_size = 512
learning_rate = 1e-3
[[regularizers]]
kind = "weight_decay"
strengths = [0.1]
"""


def test_studies_accept_the_dqn_task() -> None:
    from regspeed.study import spec as spec_module

    spec = spec_module.parse(DQN_SPEC)
    setup = spec_module.setup(spec, spec_module.conditions(spec)[1].regularizer)
    config = setup.config
    assert isinstance(config, dqn.DQNConfig) and config.buffer_size == 512 and config.env.observation == "features"
    assert spec_module.learner_of(spec).total_updates(setup) == 640 // config.steps_per_update
    resolved = spec_module.normalized(spec)["config"]
    assert resolved["dqn"]["learning_rate"] == 1e-3 and resolved["dqn"]["n_step"] == 3
    with pytest.raises(spec_module.SpecError) as caught:
        spec_module.parse(DQN_SPEC.replace("strengths = [0.1]", 'strengths = [0.1]\nnetwork = "value"'))
    assert caught.value.problems == [("regularizers[0].network", "DQN has one network (the Q-network); use all")]
    with pytest.raises(spec_module.SpecError) as caught:
        spec_module.parse(DQN_SPEC.replace("buffer_size = 512", "buffer_size = 64"))
    assert caught.value.problems[0][0] == "config.dqn.buffer_size"
