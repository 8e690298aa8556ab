"""``regspeed play``: reference policies that need no training."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from regspeed.cli.app import ColsOption, RowsOption, SeedOption, app, console, user_errors_exit_cleanly
from regspeed.errors import ConfigError

MAX_ENVS = 65_536
MAX_STEPS = 100_000  # the first environment's state is kept for every step (up to 16 kB each on a 64 x 64 board)
MAX_ENV_STEPS = 10**9  # also keeps the episode totals within their 32-bit counters
SEEDS = 2**32  # a PRNG key takes 32 bits of its seed: -1 and 2**32 - 1 would be the same key


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
    obstacle_density: Annotated[
        float, typer.Option(help="Share of the cells that are walls, 0 to 0.25 (walls never touch).")
    ] = 0.0,
    levels: Annotated[
        int, typer.Option(help="Levels played (seeds from --level-seed-offset); 0: a new level each episode.")
    ] = 0,
    level_seed_offset: Annotated[int, typer.Option(help="The first level seed played with --levels.")] = 0,
    envs: Annotated[int, typer.Option(help="Environments played in parallel.")] = 1024,
    steps: Annotated[int, typer.Option(help="Steps per environment.")] = 1000,
    seed: SeedOption = 0,
    show: Annotated[bool, typer.Option(help="Replay the first episode in the terminal.")] = False,
    gif: Annotated[Path | None, typer.Option(help="Write the first episode as an animated GIF.")] = None,
) -> None:
    """Play Snake with a policy that needs no training and summarise the episodes.

    These are the floors a learning agent is read against: the random policy, and a greedy
    one that walks to the food while avoiding immediate death. With --obstacle-density or
    --levels the boards have walls inside them (--show and --gif draw them).
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
        obstacle_density=obstacle_density,
        levels=levels,
        level_seed_offset=level_seed_offset,
        held_out_level_offset=held_out_offset_clear_of(level_seed_offset, levels),
    )
    check_play_size(envs, steps)
    check_seed(seed, "seed")
    check_gif(gif)
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


def held_out_offset_clear_of(level_seed_offset: int, levels: int) -> int:
    """A held-out level offset that does not overlap the training levels ``level_seed_offset ..
    + levels - 1``: play never plays held-out levels, so it never refuses their offset (the
    default where it is clear, else just after the training levels, else 0). Bad offsets and
    counts are left for :class:`~regspeed.envs.snake.SnakeConfig` to name."""
    from regspeed.envs import snake

    default = snake.SnakeConfig.held_out_level_offset
    end = level_seed_offset + levels
    if levels <= 0 or not default < end or default + 1 <= level_seed_offset:
        return default
    return end if end < snake.LEVEL_SEEDS else 0


def check_play_size(envs: int, steps: int) -> None:
    """``--envs`` and ``--steps`` small enough to play in memory and in minutes."""
    if not 1 <= envs <= MAX_ENVS:
        raise ConfigError("envs", f"must be between 1 and {MAX_ENVS:,} (got {envs})")
    if not 1 <= steps <= MAX_STEPS:
        raise ConfigError("steps", f"must be between 1 and {MAX_STEPS:,} (got {steps})")
    if envs * steps > MAX_ENV_STEPS:
        raise ConfigError("steps", f"envs x steps must be at most {MAX_ENV_STEPS:,} (got {envs * steps:,})")


def check_seed(seed: int, option: str) -> None:
    """A PRNG seed that names a key of its own: ``0`` to ``2**32 - 1``."""
    if not 0 <= seed < SEEDS:
        raise ConfigError(option, f"must be between 0 and {SEEDS - 1:,} (got {seed})")


def check_gif(gif: Path | None) -> None:
    """A ``--gif`` path names a file (not a folder) in a folder that exists; checked before anything runs."""
    if gif is None:
        return
    if gif.is_dir():
        raise ConfigError("gif", f"{gif} is a folder; give a file name such as {gif / 'episode.gif'}")
    if not gif.parent.is_dir():
        raise ConfigError("gif", f"folder {gif.parent} does not exist; create it or choose another path")
