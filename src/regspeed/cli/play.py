"""``regspeed play``: reference policies that need no training."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from regspeed.cli.app import ColsOption, RowsOption, SeedOption, app, console, user_errors_exit_cleanly
from regspeed.errors import ConfigError


@app.command()
@user_errors_exit_cleanly
def play(
    policy: Annotated[str, typer.Option(help="random or greedy (safe move closest to the food).")] = "greedy",
    rows: RowsOption = 10,
    cols: ColsOption = 10,
    initial_length: Annotated[int, typer.Option(help="Snake length at reset.")] = 3,
    action_mode: Annotated[str, typer.Option(help="relative or absolute.")] = "relative",
    starvation_limit: Annotated[int | None, typer.Option(help="Steps without food before truncation.")] = None,
    time_limit: Annotated[int | None, typer.Option(help="Steps per episode before truncation.")] = None,
    envs: Annotated[int, typer.Option(help="Environments played in parallel.")] = 1024,
    steps: Annotated[int, typer.Option(help="Steps per environment.")] = 1000,
    seed: SeedOption = 0,
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
