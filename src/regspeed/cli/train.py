"""``regspeed train``: one learner, several seeds, built from the command's flags through the
learner registry (the same ``build`` as a study's spec)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from regspeed.cli.app import app, console, stop_at_a_safe_point, user_errors_exit_cleanly
from regspeed.errors import ConfigError
from regspeed.study import files


@app.command()
@user_errors_exit_cleanly
def train(
    algo: Annotated[str, typer.Option(help="Learning algorithm: ppo or dqn (Double DQN).")] = "ppo",
    rows: Annotated[int | None, typer.Option(help="Grid rows (4-64; default 10).")] = None,
    cols: Annotated[int | None, typer.Option(help="Grid columns (4-64; default 10).")] = None,
    observation: Annotated[
        str | None, typer.Option(help="window, grid or features (default: window for ppo, features for dqn).")
    ] = None,
    window: Annotated[
        int | None, typer.Option(help="Side of the egocentric window (default: sees the whole board).")
    ] = None,
    action_mode: Annotated[
        str | None, typer.Option(help="relative (turns; the default) or absolute (compass moves).")
    ] = None,
    obstacle_density: Annotated[
        float | None, typer.Option(help="Share of cells that are walls inside the board, 0 to 0.25 (default 0).")
    ] = None,
    levels: Annotated[
        int | None, typer.Option(help="Training levels (level seeds); 0, the default, a fresh level per episode.")
    ] = None,
    level_seed_offset: Annotated[int | None, typer.Option(help="First training level seed (default 0).")] = None,
    reg: Annotated[
        str,
        typer.Option(help="Regularizer: none, l1, l2, weight_decay, l2_init, elastic, dropout, shrink_perturb."),
    ] = "none",
    strength: Annotated[
        float, typer.Option(help="Regularizer strength (dropout: the drop rate; shrink_perturb: the share shrunk).")
    ] = 0.0,
    reg_network: Annotated[str, typer.Option(help="Network the regularizer acts on: all, policy, value.")] = "all",
    reg_period: Annotated[
        int,
        typer.Option(
            help="shrink_perturb: optimizer steps between shrink-and-perturbs; 0: once at each phase change "
            "(needs --phase-steps)."
        ),
    ] = 1,
    reg_perturb: Annotated[
        float, typer.Option(help="shrink_perturb: noise scale as a multiple of the strength (0: shrink only).")
    ] = 1.0,
    phase_steps: Annotated[
        int | None,
        typer.Option(help="A changing world: env steps per phase (whole updates); the world changes after each."),
    ] = None,
    changes: Annotated[
        str | None,
        typer.Option(
            help="What changes at each phase boundary, comma-separated: actions, observations, rewards, "
            "board, obstacles."
        ),
    ] = None,
    schedule_seed: Annotated[
        int | None, typer.Option(help="Which sequence of worlds (the phases' permutations and scales; default 0).")
    ] = None,
    min_side: Annotated[
        int | None,
        typer.Option(help="--changes board: the least rows and cols of a phase's area (default: the snake's need)."),
    ] = None,
    phase_obstacle_density: Annotated[
        float | None,
        typer.Option(help="--changes obstacles: the share of the board that is walls in each later phase (0.1)."),
    ] = None,
    steps: Annotated[int, typer.Option(help="Env steps per run.")] = 2_000_000,
    seeds: Annotated[int, typer.Option(help="Runs (seeds 0..N-1 after --first-seed), vmapped together.")] = 1,
    first_seed: Annotated[int, typer.Option(help="First seed.")] = 0,
    lr: Annotated[
        float | None, typer.Option(help="Adam learning rate (default: 1e-3 for ppo, annealed to 0; 5e-4 for dqn).")
    ] = None,
    hidden: Annotated[str | None, typer.Option(help="Hidden layer sizes, comma-separated (default 128,128).")] = None,
    activation: Annotated[str | None, typer.Option(help="relu (the default), tanh or gelu.")] = None,
    torso: Annotated[str | None, typer.Option(help="auto (the default), mlp or cnn (needs grid observations).")] = None,
    shared_torso: Annotated[bool | None, typer.Option(help="One torso for policy and value (default: two).")] = None,
    layer_norm: Annotated[
        bool | None, typer.Option(help="LayerNorm before each hidden layer's activation (default: none).")
    ] = None,
    num_envs: Annotated[int | None, typer.Option(help="Environments per run (default: 64 ppo, 16 dqn).")] = None,
    rollout_steps: Annotated[
        int | None, typer.Option(help="Steps per environment per update (default: 128 ppo, 4 dqn).")
    ] = None,
    eval_every: Annotated[int, typer.Option(help="Greedy evaluation every N updates (0: never).")] = 10,
    out: Annotated[Path, typer.Option(help="Folder for curves, figure and checkpoint.")] = Path("runs/train"),
    tensorboard: Annotated[
        bool,
        typer.Option(
            help="Live curves: TensorBoard event files in OUT/tensorboard/seed-N, written after every chunk "
            "(`tensorboard --logdir OUT`)."
        ),
    ] = True,
) -> None:
    """Train an agent on Snake, several seeds at once in one compiled program.

    Writes curve.csv (per update), eval.csv, curve.png, config.json and checkpoint.npz (the
    full training state) to --out, and, as it trains, TensorBoard event files to
    --out/tensorboard (a seed's earlier event files there are replaced).
    """
    import numpy as np
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from regspeed.envs import render
    from regspeed.learn import checkpoint, registry
    from regspeed.learn import driver as training
    from regspeed.learn import regularizers as regs
    from regspeed.learn.learner import Request
    from regspeed.study import live, runner
    from regspeed.study.spec import machine_memory_bytes

    games = {name.removeprefix("snake-"): name for name, learner in registry.LEARNERS.items() if learner.play}
    if algo not in games:
        raise ConfigError("algo", f"must be one of {', '.join(games)} (got {algo!r})")
    learner = registry.get(games[algo])
    if not 1 <= seeds <= 10_000:
        raise ConfigError("seeds", f"must be between 1 and 10,000 (got {seeds})")
    if eval_every < 0:
        raise ConfigError("eval_every", f"must be >= 0 (got {eval_every})")
    regularizer = regs.Regularizer(reg, network=reg_network, period=reg_period, perturb=reg_perturb)
    regs.check_strength(regularizer, strength)
    change_list = _change_list(changes)
    _refuse_stray_schedule_flags(phase_steps, change_list, schedule_seed, min_side, phase_obstacle_density)
    given = {
        "env": dict(
            rows=rows, cols=cols, observation=observation, window_size=window, action_mode=action_mode,
            obstacle_density=obstacle_density, levels=levels, level_seed_offset=level_seed_offset,
        ),
        "network": dict(
            hidden=_layer_sizes(hidden), activation=activation, torso=torso, shared_torso=shared_torso,
            layer_norm=layer_norm,
        ),
        algo: dict(num_envs=num_envs, rollout_steps=rollout_steps, learning_rate=lr),
        "schedule": dict(
            phase_steps=phase_steps, changes=change_list, seed=schedule_seed, min_side=min_side,
            obstacle_density=phase_obstacle_density,
        ),
    }
    tables = {name: {key: value for key, value in table.items() if value is not None} for name, table in given.items()}
    tables = {name: table for name, table in tables.items() if table or name != "schedule"}  # stationary: no table
    if not 1 <= steps <= 10**12:
        raise ConfigError("steps", f"must be between 1 and 10^12 env steps (got {steps})")
    setup = _built(learner, tables, Request(budget=steps, regularizer=regularizer))
    needed, machine = learner.bytes_per_run(setup.config) * seeds, machine_memory_bytes()
    if machine and needed > machine:
        fewer = "use fewer seeds, environments or a smaller network"
        raise ConfigError("seeds", f"{seeds} runs need about {needed / 2**30:,.1f} GB, more than this machine's "
                          f"{machine / 2**30:,.1f} GB; {fewer}")  # fmt: skip
    config, updates, steps_per_update = setup.config, learner.total_updates(setup), learner.steps_per_update(setup)
    if out.exists() and not out.is_dir():
        raise ConfigError("out", f"{out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # e.g. under /proc, below a file, no permission
        raise ConfigError("out", f"cannot create {out}: {error.strerror or error}") from None
    files.refuse_unwritable(out)  # before compiling and training, not after

    seed_list = list(range(first_seed, first_seed + seeds))
    chunk = eval_every if eval_every else 10
    title = f"{algo.upper()}, {reg}" + (f" {strength:g}" if reg != "none" else "") + f", {render.describe(config.env)}"
    if config.schedule.changing:
        title += f", {'/'.join(config.schedule.changes)} change every {config.schedule.phase_steps:,} env steps"
    console.print(f"[bold]{title}[/]: {seeds} seed(s) x {updates * steps_per_update:,} env steps")
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f} steps"),
        TextColumn("{task.fields[rate]}"),
        TextColumn("score {task.fields[score]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    shown = learner.progress_metric
    start = time.perf_counter()
    saved = f"the training state so far is in {out / 'checkpoint.npz'}"
    with (
        files.writing_into(out),
        live.Board(out) if tensorboard else contextlib.nullcontext() as board,
        stop_at_a_safe_point(saved) as stop_if_asked,
        Progress(*columns, console=console) as progress,
    ):
        writers = _live_writers(board, seed_list)  # before compiling: a link in the way is refused now
        failed: set[int] = set()  # runs stopped in an earlier chunk: no more points, as in a study
        task = progress.add_task("compiling", total=updates * steps_per_update, rate="", score="-")

        def on_chunk(report: training.ChunkReport) -> None:
            elapsed = time.perf_counter() - start
            done_steps = report.updates_done * steps_per_update
            recent = np.nanmean(report.metrics[shown]) if np.isfinite(report.metrics[shown]).any() else float("nan")
            progress.update(
                task,
                completed=done_steps,
                description="training",
                rate=f"{done_steps * seeds / elapsed:,.0f} steps/s",
                score=f"{recent:.1f}",
            )
            for run, why in report.newly_failed.items():
                progress.console.print(f"[red]seed {seed_list[run]} stopped:[/] {why}")
            checkpoint.save(out / "checkpoint.npz", report.carry)
            if writers:
                alive = np.asarray([run not in failed for run in range(seeds)])
                chunk_points = (report.metrics, report.evaluations, report.updates_done, steps_per_update, alive)
                live.write(writers, runner.chunk_curves(*chunk_points))
            failed.update(report.newly_failed)
            stop_if_asked()  # after the checkpoint: the run's state so far is saved

        carry = learner.start(setup, seed_list, [strength] * seeds)
        carry, history = training.train(learner.trainer, config, carry, updates, chunk, eval_every, on_chunk)
    seconds = time.perf_counter() - start
    run_info = {"seeds": seed_list, "learning_rate": setup.learning_rate, "strength": strength}
    with files.writing_into(out):
        _write_training_outputs(out, title, config, seed_list, history, run_info, shown)
    console.print(_training_table(seed_list, history, updates, steps_per_update, seconds))
    console.print(f"wrote {out}/curve.csv, curve.png, checkpoint.npz")


def _live_writers(board: Any, seeds: list[int]) -> dict[int, Any]:
    """Run index -> its TensorBoard writer in ``tensorboard/seed-<s>`` (none without a
    board); each run starts afresh, so a seed's earlier event files are removed."""
    from regspeed.study import live

    if board is None:
        return {}
    return {run: board.writer(live.run_folder(seed), fresh=True) for run, seed in enumerate(seeds)}


def _change_list(changes: str | None) -> list[str] | None:
    """``--changes observations,actions`` as the schedule's list of changes."""
    if changes is None:
        return None
    return [change.strip() for change in changes.split(",") if change.strip()]


def _refuse_stray_schedule_flags(
    phase_steps: int | None, changes: list[str] | None, seed: int | None, min_side: int | None, density: float | None
) -> None:
    """Refuse a schedule flag that would be dropped or do nothing, by what was passed (not
    by comparing with the defaults): a setting without ``--phase-steps`` or with 0
    (``--changes`` given: the schedule asks for ``phase_steps`` itself), or a change's own
    setting without its change in ``--changes``."""
    settings = {"schedule_seed": (seed, None), "min_side": (min_side, "board"),
                "phase_obstacle_density": (density, "obstacles")}  # fmt: skip
    for flag, (value, change) in settings.items():
        if value is None:
            continue
        if not phase_steps and changes is None:  # none, or 0: a world that never changes
            raise ConfigError(flag, "sets a world that changes: give --phase-steps and --changes too")
        if change is not None and change not in (changes or []):
            raise ConfigError(flag, f'is a setting of the "{change}" change, which --changes does not list')


def _layer_sizes(hidden: str | None) -> tuple[int, ...] | None:
    """``--hidden 128,128`` as layer sizes."""
    if hidden is None:
        return None
    try:
        return tuple(int(size) for size in hidden.split(","))
    except ValueError:
        raise ConfigError("hidden", f"must be comma-separated integers like 128,128 (got {hidden!r})") from None


TRAIN_FLAGS = {
    "env.window_size": "window", "budget": "steps", "regularizer.network": "reg_network",
    "regularizer.period": "reg_period", "schedule.seed": "schedule_seed",
    "schedule.obstacle_density": "phase_obstacle_density",
}  # fmt: skip
"""Table paths of a learner's problems that ``regspeed train`` names by another flag."""


def _built(learner: Any, tables: dict[str, Any], request: Any) -> Any:
    """The learner's setup from the flags' tables; its problems named by their flags."""
    from regspeed.errors import ConfigProblemsError

    try:
        return learner.build(tables, request)
    except ConfigProblemsError as error:
        named = [(_flag(path), message) for path, message in error.problems]
        if len(named) == 1:
            raise ConfigError(*named[0]) from None
        raise ConfigProblemsError(named, "train") from None


def _flag(path: str) -> str:
    if path in TRAIN_FLAGS:
        return TRAIN_FLAGS[path]
    return "lr" if path.endswith(".learning_rate") else path.rsplit(".", 1)[-1]


def _write_training_outputs(
    out: Path, title: str, config: Any, seeds: list[int], history: Any, run: dict, metric: str
) -> None:
    """curve.csv, eval.csv, curve.png and config.json of a finished batch of runs."""
    import dataclasses
    import json

    import numpy as np

    from regspeed.report import run_curves as curves

    steps_axis = np.arange(1, history.updates["env_steps"].shape[1] + 1) * config.steps_per_update
    curves.write_csv(out / "curve.csv", seeds, steps_axis, history.updates)
    if history.evaluated_at:
        eval_axis = np.asarray(history.evaluated_at) * config.steps_per_update
        curves.write_csv(out / "eval.csv", seeds, eval_axis, history.evaluations)
    curves.plot(out / "curve.png", title, seeds, history, config.steps_per_update, metric)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(config) | run, indent=2))


def _training_table(seeds: list[int], history: Any, updates: int, steps_per_update: int, seconds: float) -> Table:
    """Per seed: training score over the last 10% of updates, last evaluation, status."""
    import numpy as np

    table = Table(title=f"after {updates * steps_per_update:,} env steps per seed, {seconds:.0f} s")
    evaluation = history.evaluations
    held_out = history.evaluated_at and "test_levels_score" in evaluation  # a world with levels
    names = ["seed", "train score (last 10%)", "eval score", "eval max", *(["held-out levels"] * bool(held_out))]
    for name in [*names, "status"]:
        table.add_column(name, justify="right")
    tail = max(1, updates // 10)
    for run, seed in enumerate(seeds):
        last_scores = history.updates["score"][run, -tail:]
        train_score = f"{np.nanmean(last_scores):.1f}" if np.isfinite(last_scores).any() else "-"
        eval_score = f"{evaluation['eval_score'][run, -1]:.1f}" if history.evaluated_at else "-"
        eval_max = f"{evaluation['eval_max_score'][run, -1]:.0f}" if history.evaluated_at else "-"
        held_out_score = [f"{evaluation['test_levels_score'][run, -1]:.1f}"] if held_out else []
        status = "[red]failed[/]" if run in history.failures else "ok"
        table.add_row(str(seed), train_score, eval_score, eval_max, *held_out_score, status)
    return table
