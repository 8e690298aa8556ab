"""The ``regspeed`` command: real runs, and one-line errors for user mistakes."""

from __future__ import annotations

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
