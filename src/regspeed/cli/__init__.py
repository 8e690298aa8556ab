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

# Options shared by several commands.
RowsOption = Annotated[int, typer.Option(help="Grid rows (4-64).")]
ColsOption = Annotated[int, typer.Option(help="Grid columns (4-64).")]
SeedOption = Annotated[int, typer.Option(help="PRNG seed.")]


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
    reg: Annotated[
        str, typer.Option(help="Regularizer: none, l1, l2, weight_decay, l2_init, elastic, dropout.")
    ] = "none",
    strength: Annotated[float, typer.Option(help="Regularizer strength (the drop rate for dropout).")] = 0.0,
    reg_network: Annotated[str, typer.Option(help="Network the regularizer acts on: all, policy, value.")] = "all",
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
    num_envs: Annotated[int | None, typer.Option(help="Environments per run (default: 64 ppo, 16 dqn).")] = None,
    rollout_steps: Annotated[
        int | None, typer.Option(help="Steps per environment per update (default: 128 ppo, 4 dqn).")
    ] = None,
    eval_every: Annotated[int, typer.Option(help="Greedy evaluation every N updates (0: never).")] = 10,
    out: Annotated[Path, typer.Option(help="Folder for curves, figure and checkpoint.")] = Path("runs/train"),
) -> None:
    """Train an agent on Snake, several seeds at once in one compiled program.

    Writes curve.csv (per update), eval.csv, curve.png, config.json and checkpoint.npz (the
    full training state) to --out.
    """
    import numpy as np
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from regspeed.envs import render
    from regspeed.learn import checkpoint, registry
    from regspeed.learn import driver as training
    from regspeed.learn import regularizers as regs
    from regspeed.learn.learner import Request

    games = {name.removeprefix("snake-"): name for name, learner in registry.LEARNERS.items() if learner.play}
    if algo not in games:
        raise ConfigError("algo", f"must be one of {', '.join(games)} (got {algo!r})")
    learner = registry.get(games[algo])
    if seeds < 1:
        raise ConfigError("seeds", f"must be at least 1 (got {seeds})")
    if eval_every < 0:
        raise ConfigError("eval_every", f"must be >= 0 (got {eval_every})")
    regularizer = regs.Regularizer(reg, network=reg_network)
    regs.check_strength(regularizer, strength)
    given = {
        "env": dict(rows=rows, cols=cols, observation=observation, window_size=window, action_mode=action_mode),
        "network": dict(hidden=_layer_sizes(hidden), activation=activation, torso=torso, shared_torso=shared_torso),
        algo: dict(num_envs=num_envs, rollout_steps=rollout_steps, learning_rate=lr),
    }
    tables = {name: {key: value for key, value in table.items() if value is not None} for name, table in given.items()}
    setup = _built(learner, tables, Request(budget=steps, regularizer=regularizer))
    config, updates, steps_per_update = setup.config, learner.total_updates(setup), learner.steps_per_update(setup)
    if out.exists() and not out.is_dir():
        raise ConfigError("out", f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)

    seed_list = list(range(first_seed, first_seed + seeds))
    chunk = eval_every if eval_every else 10
    title = f"{algo.upper()}, {reg}" + (f" {strength:g}" if reg != "none" else "") + f", {render.describe(config.env)}"
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
    with Progress(*columns, console=console) as progress:
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

        carry = learner.start(setup, seed_list, [strength] * seeds)
        carry, history = training.train(learner.trainer, config, carry, updates, chunk, eval_every, on_chunk)
    seconds = time.perf_counter() - start
    run_info = {"seeds": seed_list, "learning_rate": setup.learning_rate, "strength": strength}
    _write_training_outputs(out, title, config, seed_list, history, run_info)
    console.print(_training_table(seed_list, history, updates, steps_per_update, seconds))
    console.print(f"wrote {out}/curve.csv, curve.png, checkpoint.npz")


def _layer_sizes(hidden: str | None) -> tuple[int, ...] | None:
    """``--hidden 128,128`` as layer sizes."""
    if hidden is None:
        return None
    try:
        return tuple(int(size) for size in hidden.split(","))
    except ValueError:
        raise ConfigError("hidden", f"must be comma-separated integers like 128,128 (got {hidden!r})") from None


TRAIN_FLAGS = {"env.window_size": "window", "budget": "steps", "regularizer.network": "reg_network"}
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


def _write_training_outputs(out: Path, title: str, config: Any, seeds: list[int], history: Any, run: dict) -> None:
    """curve.csv, eval.csv, curve.png and config.json of a finished batch of runs."""
    import dataclasses
    import json

    import numpy as np

    from regspeed.report import run_curves as curves

    steps_axis = np.arange(1, history.updates["score"].shape[1] + 1) * config.steps_per_update
    curves.write_csv(out / "curve.csv", seeds, steps_axis, history.updates)
    if history.evaluated_at:
        eval_axis = np.asarray(history.evaluated_at) * config.steps_per_update
        curves.write_csv(out / "eval.csv", seeds, eval_axis, history.evaluations)
    curves.plot(out / "curve.png", title, seeds, history, config.steps_per_update)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(config) | run, indent=2))


def _training_table(seeds: list[int], history: Any, updates: int, steps_per_update: int, seconds: float) -> Table:
    """Per seed: training score over the last 10% of updates, last evaluation, status."""
    import numpy as np

    table = Table(title=f"after {updates * steps_per_update:,} env steps per seed, {seconds:.0f} s")
    for name in ("seed", "train score (last 10%)", "eval score", "eval max", "status"):
        table.add_column(name, justify="right")
    tail = max(1, updates // 10)
    for run, seed in enumerate(seeds):
        last_scores = history.updates["score"][run, -tail:]
        train_score = f"{np.nanmean(last_scores):.1f}" if np.isfinite(last_scores).any() else "-"
        evaluation = history.evaluations
        eval_score = f"{evaluation['eval_score'][run, -1]:.1f}" if history.evaluated_at else "-"
        eval_max = f"{evaluation['eval_max_score'][run, -1]:.0f}" if history.evaluated_at else "-"
        status = "[red]failed[/]" if run in history.failures else "ok"
        table.add_row(str(seed), train_score, eval_score, eval_max, status)
    return table


# ----------------------------------------------------------------------------- studies

SpecArgument = Annotated[
    Path | None, typer.Argument(help="Study spec (TOML). Default: the embedded default study (`regspeed spec`).")
]
StudyFolder = Annotated[Path, typer.Argument(help="A study's folder, e.g. runs/default.")]


@app.command()
@user_errors_exit_cleanly
def spec() -> None:
    """Print the default study spec, with comments: a starting point for your own."""
    from regspeed.study import spec as spec_module

    print(spec_module.default_text(), end="")


@app.command()
@user_errors_exit_cleanly
def study(
    spec_file: SpecArgument = None,
    out: Annotated[Path | None, typer.Option(help="Study folder (default: runs/<name>).")] = None,
    quick: Annotated[bool, typer.Option(help="The same study, small: 3 seeds and 1/12 of the budget.")] = False,
    backend: Annotated[str, typer.Option(help="local (this process) or ray (each batch a Ray task).")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (default: start a local one).")] = None,
    cpus_per_batch: Annotated[float, typer.Option(help="Ray: CPUs reserved by each batch.")] = 1.0,
    gpus_per_batch: Annotated[float, typer.Option(help="Ray: GPUs reserved by each batch.")] = 0.0,
) -> None:
    """Run a study (baseline vs regularizers x strengths x seeds), or resume it.

    Results go to a SQLite store in the study folder; re-running continues where it
    stopped and never recomputes a finished run.
    """
    from regspeed.study import runner
    from regspeed.study import spec as spec_module

    text = spec_module.default_text() if spec_file is None else _read_spec_text(spec_file)
    the_spec = spec_module.load(spec_file)
    if quick:
        the_spec = spec_module.quick(the_spec)
    folder = out if out is not None else Path("runs") / the_spec.name
    if folder.exists() and not folder.is_dir():
        raise ConfigError("out", f"{folder} exists and is not a folder")
    options = {"address": address, "cpus_per_batch": cpus_per_batch, "gpus_per_batch": gpus_per_batch}
    with _StudyProgress(the_spec) as progress:
        outcome = runner.run(the_spec, folder, text, backend, options, on_start=progress.start, on_chunk=progress.chunk)
    if outcome.already_finished:
        console.print(f"{folder}: this study is already finished; nothing to do", soft_wrap=True, highlight=False)
    else:
        console.print(f"finished in {outcome.seconds:.0f} s")
    _print_summary(folder)
    _report(folder)


def _report(folder: Path) -> None:
    from regspeed.report import report as report_module

    with console.status("analysing and writing the report..."):
        written = report_module.write(folder)
    console.print(written.table)
    console.print(report_module.headline(written.analysis), soft_wrap=True, highlight=False)
    console.print(f"wrote {written.html_path} and {written.markdown_path}", soft_wrap=True, highlight=False)


@app.command()
@user_errors_exit_cleanly
def watch(
    folder: StudyFolder,
    condition: Annotated[str, typer.Option(help="Condition to watch, e.g. l2@0.001.")] = "none",
    seed: Annotated[int | None, typer.Option(help="Run seed (default: the condition's best run).")] = None,
    episode_seed: Annotated[int, typer.Option(help="Seed of the episode's board and food.")] = 0,
    max_steps: Annotated[int, typer.Option(help="Steps at most.")] = 500,
    gif: Annotated[Path | None, typer.Option(help="Write the episode as an animated GIF instead.")] = None,
    delay: Annotated[float, typer.Option(help="Seconds between frames in the terminal.")] = 0.08,
) -> None:
    """Watch a trained agent of a study play one episode (greedy policy), in the terminal or as a GIF."""
    from regspeed.analysis import progress
    from regspeed.envs import render
    from regspeed.study import results
    from regspeed.study import store as store_module

    if max_steps < 1:
        raise ConfigError("max_steps", f"must be a positive integer (got {max_steps})")
    if gif is not None and not gif.parent.exists():
        raise ConfigError("gif", f"folder {gif.parent} does not exist; create it or choose another path")
    with store_module.Store.open(folder) as store:
        chosen = seed if seed is not None else progress.best_seed(results.load(store, ("score",)), condition)
        with console.status(f"loading {condition} seed {chosen}..."):
            env, states = results.episode(store, condition, chosen, episode_seed, max_steps)
    summary = f"{condition} seed {chosen}: {len(states)} steps, score {int(states[-1].length) - env.initial_length}"
    if gif is not None:
        render.save_gif(env, states, gif)
        console.print(f"{summary}; wrote {gif}", highlight=False)
        return
    for state in states:
        console.clear()
        console.print(render.to_text(env, state), highlight=False)
        time.sleep(delay)
    console.print(summary, highlight=False)


@app.command()
@user_errors_exit_cleanly
def report(folder: StudyFolder) -> None:
    """Analyse a study (finished or not) and write report.html and summary.md into its folder."""
    _report(folder)


def _read_spec_text(path: Path) -> str:
    if not path.is_file():
        raise ConfigError("spec", f"{path} is not a file; write one with `regspeed spec > {path.name}`")
    return path.read_text()


class _StudyProgress:
    """A Rich display: the whole study with its ETA, and the batch being trained."""

    def __init__(self, the_spec: Any) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.spec = the_spec
        self.progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.batches: dict[int, tuple[Any, int]] = {}  # batch id -> (progress task, runs)
        self.batch_updates: dict[int, int] = {}
        self.batch_steps: dict[int, int] = {}

    def __enter__(self) -> _StudyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, store: Any, jobs: list) -> None:
        """Called once the plan is known: totals in updates x runs (shown only if there is work)."""
        if not jobs:
            return
        self.progress.start()
        self.study = self.progress.add_task("study", total=1.0, detail="compiling")
        runs = store.runs()
        batches = store.batches()
        self.total = sum(batch.total_updates * sum(r.batch == batch.batch_id for r in runs) for batch in batches)
        self.done = {batch.batch_id: batch.updates_done for batch in batches}
        self.sizes = {batch.batch_id: sum(r.batch == batch.batch_id for r in runs) for batch in batches}
        self.progress.update(self.study, total=max(1, self.total), completed=self._completed())
        count = len(batches)
        for job in jobs:
            names = sorted({store_name for store_name in self._conditions(store, job.batch_id)})
            label = f"batch {job.batch_id + 1}/{count}: {', '.join(names)}"
            task = self.progress.add_task(
                label if len(label) < 60 else label[:57] + "...", total=1.0, detail="waiting", start=False
            )
            self.batches[job.batch_id] = (task, len(job.seeds))

    @staticmethod
    def _conditions(store: Any, batch_id: int) -> list[str]:
        return [run.condition for run in store.runs() if run.batch == batch_id]

    def _completed(self) -> int:
        return sum(self.done[b] * self.sizes[b] for b in self.done)

    def chunk(self, outcome: Any, runs: int) -> None:
        """Called after every chunk of every batch."""
        task, size = self.batches[outcome.batch_id]
        chunk_updates = outcome.updates_done - self.done[outcome.batch_id]
        self.done[outcome.batch_id] = outcome.updates_done
        rate = chunk_updates * outcome.steps_per_update * size / max(outcome.seconds, 1e-9)
        self.progress.start_task(task)
        self.progress.update(
            task,
            total=outcome.total_updates,
            completed=outcome.updates_done,
            detail=f"{size} runs, {rate:,.0f} steps/s",
        )
        self.progress.update(self.study, completed=self._completed(), detail="")
        if outcome.updates_done >= outcome.total_updates:
            self.progress.remove_task(task)


def _print_summary(folder: Path) -> None:
    from regspeed.analysis import progress
    from regspeed.study import results
    from regspeed.study import store as store_module

    with store_module.Store.open(folder) as store:
        data = results.load(store, results.speed_metrics(store))
    rows = progress.table(data)
    table = Table(title=f"{folder}: IQM over seeds of the last 10% of the budget")
    table.add_column("condition", no_wrap=True)
    for name in ("runs done", "failed", *data.speed_metrics):
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(
            row.condition,
            f"{row.finished + row.failed}/{row.runs}" + ("" if row.progress >= 1 else f" ({row.progress:.0%})"),
            str(row.failed) if not row.failed else f"[red]{row.failed}[/]",
            *(_number(row.final[metric]) for metric in data.speed_metrics),
        )
    console.print(table)
    failed = [run for run in data.runs if run.status == "failed"]
    for run in failed:
        console.print(f"[red]{run.condition} seed {run.seed} failed:[/] {run.error}", highlight=False)


def _number(value: float) -> str:
    return f"{value:.3g}" if value == value else "-"


@app.command()
@user_errors_exit_cleanly
def status(folder: StudyFolder) -> None:
    """Show a study's progress: runs finished, failed and pending per condition."""
    from regspeed.study import store as store_module

    with store_module.Store.open(folder) as store:
        meta = store.meta()
    console.print(f"{folder}: study created {meta.get('created', '?')}")
    _print_summary(folder)


@app.command()
@user_errors_exit_cleanly
def export(
    folder: StudyFolder,
    format: Annotated[
        str, typer.Option("--format", help="csv (long form, every metric) or npz (rliable-shaped).")
    ] = "csv",
    metric: Annotated[str, typer.Option(help="npz: the metric to export.")] = "score",
    out: Annotated[Path | None, typer.Option(help="Output file (default: DIR/curves.csv or DIR/<metric>.npz).")] = None,
) -> None:
    """Export a study's curves: CSV (condition, seed, metric, step, value) or NPZ shaped as
    rliable expects (per condition: runs x tasks x points; the step axis under 'steps')."""
    from regspeed.study import results
    from regspeed.study import store as store_module

    if format not in results.FORMATS:
        raise ConfigError("format", f"must be one of {', '.join(results.FORMATS)} (got {format!r})")
    target = out if out is not None else folder / ("curves.csv" if format == "csv" else f"{metric}.npz")
    with store_module.Store.open(folder) as store:
        results.export(store, target, format, metric)
    console.print(f"wrote {target}")


if __name__ == "__main__":
    app()
