"""The ``regspeed`` command: real runs, and one-line errors for user mistakes."""

from __future__ import annotations

from pathlib import Path

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


# ------------------------------------------------- options out of range: one line, nothing written

SEEDS = "must be between 0 and 4,294,967,295"
DELAYS = "delay: must be between 0 and 10 seconds"
PRODUCT = "envs x steps must be at most 1,000,000,000"


def _files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


def _refused(arguments: list[str], message: str, folder: Path) -> None:
    """Exit code 2 and exactly ``error: <message>`` on one line; nothing written under ``folder``."""
    before = _files(folder)
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2, (arguments, result.output)
    assert result.output.strip() == f"error: {message}", (arguments, result.output)
    assert _files(folder) == before


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seed", "99999999999999999999"], f"seed: {SEEDS} (got 99999999999999999999)"),
        (["--seed", "4294967296"], f"seed: {SEEDS} (got 4294967296)"),
        (["--seed", "-1"], f"seed: {SEEDS} (got -1)"),
        (["--envs", "1000000000", "--steps", "1000000000"], "envs: must be between 1 and 65,536 (got 1000000000)"),
        (["--envs", "0"], "envs: must be between 1 and 65,536 (got 0)"),
        (["--steps", "1000000"], "steps: must be between 1 and 100,000 (got 1000000)"),
        (["--envs", "65536", "--steps", "100000"], f"steps: {PRODUCT} (got 6,553,600,000)"),
    ],
)
def test_play_refuses_seeds_and_sizes_out_of_range(tmp_path: Path, flags: list[str], message: str) -> None:
    _refused(["play", *flags, "--gif", str(tmp_path / "episode.gif")], message, tmp_path)


def test_play_and_watch_refuse_a_gif_that_is_a_folder_or_in_a_missing_folder(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    missing = tmp_path / "missing" / "x.gif"
    for command in (["play"], ["watch", str(tmp_path / "study")]):
        is_a_folder = f"gif: {folder} is a folder; give a file name such as {folder / 'episode.gif'}"
        _refused([*command, "--gif", str(folder)], is_a_folder, tmp_path)
        no_folder = f"gif: folder {missing.parent} does not exist; create it or choose another path"
        _refused([*command, "--gif", str(missing)], no_folder, tmp_path)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--delay", "-1"], f"{DELAYS} (got -1)"),
        (["--delay", "nan"], f"{DELAYS} (got nan)"),
        (["--delay", "inf"], f"{DELAYS} (got inf)"),
        (["--delay", "1e11"], f"{DELAYS} (got 1e+11)"),
        (["--max-steps", "100000000000"], "max_steps: must be between 1 and 100,000 (got 100000000000)"),
        (["--max-steps", "0"], "max_steps: must be between 1 and 100,000 (got 0)"),
        (["--episode-seed", "99999999999999999999"], f"episode_seed: {SEEDS} (got 99999999999999999999)"),
    ],
)
def test_watch_refuses_options_out_of_range_before_opening_the_study(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    # the options are checked first: the (missing) study folder is never looked at, nor created
    _refused(["watch", str(tmp_path / "study"), "--seed", "0", *flags], message, tmp_path)


def test_export_refuses_an_output_file_in_a_missing_folder(tmp_path: Path) -> None:
    out = tmp_path / "missing" / "x.csv"
    message = f"out: folder {out.parent} does not exist; create it or choose another path"
    _refused(["export", str(tmp_path / "study"), "--out", str(out)], message, tmp_path)


def test_train_refuses_an_out_folder_it_cannot_create(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    below_a_file = tmp_path / "file" / "run"
    _refused(["train", "--out", str(below_a_file)], f"out: cannot create {below_a_file}: Not a directory", tmp_path)
    if Path("/proc/self").is_dir():  # Linux: nothing can be created in /proc
        _refused(["train", "--out", "/proc/x"], "out: cannot create /proc/x: No such file or directory", tmp_path)
        assert not Path("/proc/x").exists()


@pytest.mark.parametrize(
    ("arguments", "option"),
    [
        (["play", "--seed", "1e20"], "'--seed'"),
        (["play", "--envs", "1e9", "--steps", "1e9"], "'--envs'"),
        (["watch", "runs/none", "--max-steps", "1e11"], "'--max-steps'"),
    ],
)
def test_a_number_in_exponent_form_for_an_integer_option_is_a_usage_error(arguments: list[str], option: str) -> None:
    # Typer's own parsing: exit code 2 and the option named (in its usage box) before the command runs
    result = runner.invoke(app, arguments)
    assert result.exit_code == 2 and option in result.output and "Traceback" not in result.output
