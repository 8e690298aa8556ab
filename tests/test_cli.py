"""The ``regspeed`` command: real runs, and one-line errors for user mistakes."""

from __future__ import annotations

import pytest
from PIL import Image
from typer.testing import CliRunner

from regspeed.cli import app

runner = CliRunner()


def test_play_prints_a_summary_and_writes_a_gif(tmp_path) -> None:
    gif = tmp_path / "episode.gif"
    result = runner.invoke(
        app, ["play", "--rows", "5", "--cols", "5", "--envs", "8", "--steps", "60", "--gif", str(gif)]
    )
    assert result.exit_code == 0, result.output
    assert "greedy policy on Snake 5x5" in result.output
    assert "episodes ended" in result.output
    with Image.open(gif) as image:
        assert image.n_frames >= 1


def test_bad_option_is_one_line_naming_it_with_exit_code_2() -> None:
    result = runner.invoke(app, ["play", "--rows", "2"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: rows: must be an integer between 4 and 64 (got 2)"
    assert "Traceback" not in result.output


def test_unknown_policy_is_refused() -> None:
    result = runner.invoke(app, ["play", "--policy", "clever", "--rows", "5", "--cols", "5"])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: policy: must be one of random, greedy")


@pytest.mark.slow
def test_train_writes_curves_figure_and_a_loadable_checkpoint(tmp_path) -> None:
    import json

    import jax

    from regspeed.envs import snake
    from regspeed.learn import checkpoint, nets, ppo

    out = tmp_path / "run"
    args = ["train", "--rows", "5", "--cols", "5", "--observation", "features", "--hidden", "16", "--num-envs", "8"]
    args += ["--rollout-steps", "16", "--steps", "640", "--seeds", "2", "--eval-every", "5", "--out", str(out)]
    args += ["--reg", "l2", "--strength", "1e-3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = (out / "curve.csv").read_text().splitlines()
    assert lines[0].startswith("seed,env_steps,") and "score" in lines[0] and "reg_loss" in lines[0]
    assert len(lines) == 1 + 2 * 5  # 2 seeds x 5 updates of 128 steps
    assert len((out / "eval.csv").read_text().splitlines()) == 1 + 2 * 2  # updates 0 and 5
    assert (out / "curve.png").stat().st_size > 10_000
    saved = json.loads((out / "config.json").read_text())
    assert saved["regularizer"]["kind"] == "l2" and saved["seeds"] == [0, 1]
    config = ppo.PPOConfig(
        env=snake.SnakeConfig(rows=5, cols=5, observation="features", window_size=9),
        network=nets.NetworkConfig(hidden=(16,)),
        num_envs=8,
        rollout_steps=16,
    )
    template = ppo.init_batch(config, ppo.run_keys([0, 0]), jax.tree.map(lambda x: x.repeat(2), ppo.hparams()))
    carry = checkpoint.load(out / "checkpoint.npz", template)
    assert [int(u) for u in carry.update] == [5, 5]


def test_train_refuses_a_budget_below_one_update() -> None:
    result = runner.invoke(app, ["train", "--steps", "100"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: steps: must be at least one update = num_envs x rollout_steps = 8192 env steps (got 100)"
    )


def test_train_refuses_an_unknown_regularizer_and_a_bad_strength() -> None:
    result = runner.invoke(app, ["train", "--reg", "l3"])
    assert result.exit_code == 2 and result.output.startswith("error: reg: unknown regularizer 'l3'")
    result = runner.invoke(app, ["train", "--reg", "dropout", "--strength", "1.5"])
    assert result.exit_code == 2 and "strength: a dropout rate must be in [0, 1)" in result.output
    for bad in ("nan", "inf", "-1"):
        result = runner.invoke(app, ["train", "--reg", "l2", "--strength", bad])
        assert result.exit_code == 2 and "strength: must be a finite number >= 0" in result.output, bad


def test_train_names_bad_sizes_and_learning_rates_by_their_flags() -> None:
    for flags, message in (
        (["--num-envs", "0"], "error: num_envs: must be a positive integer (got 0)"),
        (["--window", "0", "--observation", "window"], "error: window: must be an odd integer from 3 to 127 (got 0)"),
        (["--lr", "-1"], "error: lr: must be a number > 0 (got -1.0)"),
        (["--rows", "3"], "error: rows: must be an integer between 4 and 64 (got 3)"),
        (["--seeds", "1000000000"], "error: seeds: must be between 1 and 10,000 (got 1000000000)"),
        (["--steps", "10" + "0" * 17], "error: steps: must be between 1 and 10^12 env steps (got 10" + "0" * 17 + ")"),
    ):
        result = runner.invoke(app, ["train", *flags])
        assert result.exit_code == 2 and result.output.strip() == message, (flags, result.output)


def test_train_refuses_a_network_that_does_not_fit_the_observation() -> None:
    result = runner.invoke(app, ["train", "--observation", "features", "--torso", "cnn"])
    assert result.exit_code == 2
    assert result.output.startswith("error: torso: a cnn needs grid observations")
