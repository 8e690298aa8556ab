"""The ``regspeed`` command.

User mistakes (:class:`~regspeed.errors.ConfigError`) end with one line on stderr naming
the option and exit code 2, never a traceback.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from regspeed import __version__
from regspeed.errors import ConfigError

app = typer.Typer(
    name="regspeed",
    help="Does L1/L2 regularization make a neural network learn faster? Measure it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
error_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def user_errors_exit_cleanly(command: F) -> F:
    """Turn a :class:`ConfigError` raised by ``command`` into one line and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ConfigError as error:
            error_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        console.print(f"regspeed {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Does L1/L2 regularization make a neural network learn faster? Measure it."""


@app.command()
@user_errors_exit_cleanly
def play(
    policy: Annotated[str, typer.Option(help="random or greedy (safe move closest to the food).")] = "greedy",
    rows: Annotated[int, typer.Option(help="Grid rows (4-64).")] = 10,
    cols: Annotated[int, typer.Option(help="Grid columns (4-64).")] = 10,
    initial_length: Annotated[int, typer.Option(help="Snake length at reset.")] = 3,
    action_mode: Annotated[str, typer.Option(help="relative or absolute.")] = "relative",
    starvation_limit: Annotated[int | None, typer.Option(help="Steps without food before truncation.")] = None,
    time_limit: Annotated[int | None, typer.Option(help="Steps per episode before truncation.")] = None,
    envs: Annotated[int, typer.Option(help="Environments played in parallel.")] = 1024,
    steps: Annotated[int, typer.Option(help="Steps per environment.")] = 1000,
    seed: Annotated[int, typer.Option(help="PRNG seed.")] = 0,
    show: Annotated[bool, typer.Option(help="Replay the first episode in the terminal.")] = False,
    gif: Annotated[Path | None, typer.Option(help="Write the first episode as an animated GIF.")] = None,
) -> None:
    """Play Snake with a policy that needs no training and summarise the episodes.

    These are the floors a learning agent is read against: the random policy, and a greedy
    one that walks to the food while avoiding immediate death.
    """
    from regspeed.envs import play as play_module
    from regspeed.envs import render, snake

    config = snake.SnakeConfig(
        rows=rows,
        cols=cols,
        initial_length=initial_length,
        action_mode=action_mode,
        starvation_limit=starvation_limit,
        time_limit=time_limit,
    )
    if gif is not None and not gif.parent.exists():
        raise ConfigError("gif", f"folder {gif.parent} does not exist; create it or choose another path")
    with console.status(f"playing {envs} x {steps} steps ({policy} policy, compiling first)..."):
        start = time.perf_counter()
        summary, episode = play_module.play(config, policy, seed, envs, steps)
        seconds = time.perf_counter() - start
    table = Table(title=f"{policy} policy on {render.describe(config)}")
    table.add_column("episodes ended", justify="right")
    table.add_column("mean score", justify="right")
    table.add_column("max score", justify="right")
    table.add_column("mean steps", justify="right")
    table.add_column("causes", justify="left")
    causes = ", ".join(f"{name} {count}" for name, count in summary.causes.items() if count)
    table.add_row(
        f"{summary.episodes:,}",
        f"{summary.mean_score:.2f}",
        str(summary.max_score),
        f"{summary.mean_steps:.1f}",
        causes,
    )
    console.print(table)
    console.print(f"{summary.env_steps:,} env steps in {seconds:.1f} s, compilation included")
    if show:
        for state in episode:
            console.print(render.to_text(config, state), highlight=False)
            console.print()
    if gif is not None:
        render.save_gif(config, episode, gif)
        console.print(f"wrote {gif} ({len(episode)} frames)")
