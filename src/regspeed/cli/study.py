"""``regspeed spec``, ``study``, ``status``, ``report``, ``watch`` and ``export``: studies and
their results."""

from __future__ import annotations

import math
import shlex
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from regspeed.cli.app import app, console, stop_at_a_safe_point, user_errors_exit_cleanly
from regspeed.cli.play import check_gif, check_seed
from regspeed.errors import ConfigError
from regspeed.safe_text import printable, terminal_text

SpecArgument = Annotated[
    Path | None, typer.Argument(help="Study spec (TOML). Default: the embedded default study (`regspeed spec`).")
]
StudyFolder = Annotated[Path, typer.Argument(help="A study's folder, e.g. runs/default.")]
CellOption = Annotated[
    str | None, typer.Option(help="A study with factors: the cell, by number (0, 1, ...) or label (board=6).")
]


def cell_index(store: Any, cell: str | None) -> int:
    """The cell a ``--cell`` option names, by number or label (None: the first)."""
    if cell is None:
        return 0
    labels = [row.label for row in store.cells()]
    if cell in labels:
        return labels.index(cell)
    if cell.isdigit() and int(cell) < len(labels):
        return int(cell)
    raise ConfigError("cell", f"no cell {cell!r}; choose one of: {_cells_hint(store)}")


def _cells_hint(store: Any) -> str:
    labels = [row.label for row in store.cells()]
    shown = "; ".join(f"{index} ({label})" for index, label in enumerate(labels[:6]))
    return shown + (f"; and {len(labels) - 6} more" if len(labels) > 6 else "")


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
    quick: Annotated[
        bool,
        typer.Option(
            help="The same study, small: 3 seeds and 1/12 of the budget (a minute; too few seeds for any verdict "
            "but 'inconclusive': it shows the pipeline)."
        ),
    ] = False,
    backend: Annotated[str, typer.Option(help="local (this process) or ray (each batch a Ray task).")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (default: start a local one).")] = None,
    cpus_per_batch: Annotated[float, typer.Option(help="Ray: CPUs reserved by each batch.")] = 1.0,
    gpus_per_batch: Annotated[float, typer.Option(help="Ray: GPUs reserved by each batch.")] = 0.0,
    tensorboard: Annotated[
        bool,
        typer.Option(
            help="Live curves: TensorBoard event files in FOLDER/tensorboard, one run per condition and seed, "
            "written as chunks are stored (`tensorboard --logdir FOLDER`). Changes no result."
        ),
    ] = True,
) -> None:
    """Run a study (baseline vs regularizers x strengths x seeds), or resume it.

    Results go to a SQLite store in the study folder; re-running continues where it
    stopped and never recomputes a finished run. A sequential study runs its seeds in
    waves, each condition until its comparison is decided. Every stored chunk also goes to
    TensorBoard event files in the folder (--no-tensorboard: not).
    """
    from regspeed.study import results, runner
    from regspeed.study import spec as spec_module

    text = spec_module.default_text() if spec_file is None else spec_module.read(spec_file)
    the_spec = spec_module.load(spec_file)
    if quick:
        the_spec = spec_module.quick(the_spec)
    folder = out if out is not None else Path("runs") / the_spec.name  # runner.run refuses a folder not a study's
    options = {"address": address, "cpus_per_batch": cpus_per_batch, "gpus_per_batch": gpus_per_batch}
    resume = "every finished chunk is stored; run the same command to resume"
    with stop_at_a_safe_point(resume) as stop_if_asked, _StudyProgress(the_spec) as progress:

        def on_start(store: Any, jobs: list) -> None:
            if jobs and tensorboard and progress.study is None:  # the first wave with work
                hint = f"live curves: tensorboard --logdir {shlex.quote(str(folder))}"
                console.print(terminal_text(hint), soft_wrap=True, highlight=False)
            progress.start(store, jobs)

        def on_chunk(outcome: Any, runs: int) -> None:
            progress.chunk(outcome, runs)
            stop_if_asked()  # the chunk is stored: stopping here loses nothing

        def next_wave(store: Any) -> list[str]:
            from regspeed.analysis import sequential  # asked only by a sequential study

            # the decision reads the primary (a speed) metric only: not every diagnostic curve
            return sequential.next_wave(results.load(store, results.speed_metrics(store)))

        def choose(store: Any, tuned: Any) -> Any:
            from regspeed.analysis import tuning  # asked only by a tuned study

            return tuning.choose(store, tuned)

        outcome = runner.run(
            the_spec,
            folder,
            text,
            backend,
            options,
            on_start=on_start,
            on_chunk=on_chunk,
            next_wave=next_wave,
            tensorboard=tensorboard,
            choose=choose,
        )
    if outcome.already_finished:
        already = f"{folder}: this study is already finished; nothing to do"
        console.print(terminal_text(already), soft_wrap=True, highlight=False)
    else:
        console.print(f"finished in {outcome.seconds:.0f} s")
    _print_summary(folder)
    _report(folder)


def _report(folder: Path, out: Path | None = None) -> None:
    from regspeed.report import report as report_module

    with console.status("analysing and writing the report..."):
        written = report_module.write(folder, out)
    console.print(written.table)
    console.print(terminal_text(report_module.answer(written.analysis)), soft_wrap=True, highlight=False)
    written_paths = f"wrote {written.html_path} and {written.markdown_path}"
    console.print(terminal_text(written_paths), soft_wrap=True, highlight=False)


MAX_WATCH_STEPS = 100_000  # every state of the episode is kept, to replay it or write the GIF
MAX_DELAY = 10.0  # seconds between frames


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
    cell: CellOption = None,
) -> None:
    """Watch a trained agent of a study play one episode (greedy policy), in the terminal or as a GIF."""
    from regspeed.analysis import progress
    from regspeed.envs import render
    from regspeed.study import results
    from regspeed.study import store as store_module

    if not 1 <= max_steps <= MAX_WATCH_STEPS:
        raise ConfigError("max_steps", f"must be between 1 and {MAX_WATCH_STEPS:,} (got {max_steps})")
    if not (math.isfinite(delay) and 0 <= delay <= MAX_DELAY):
        raise ConfigError("delay", f"must be between 0 and {MAX_DELAY:g} seconds (got {delay:g})")
    check_seed(episode_seed, "episode_seed")
    check_gif(gif)
    with store_module.Store.open(folder) as store:
        index = cell_index(store, cell)
        if seed is None:
            best_by = results.load(store, (), index).progress_metric
            seed = progress.best_seed(results.load(store, (best_by,), index), condition, best_by)
        chosen = seed
        with console.status(f"loading {condition} seed {chosen}..."):
            env, states = results.episode(store, condition, chosen, episode_seed, max_steps, index)
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
def report(
    folder: StudyFolder,
    out: Annotated[
        Path | None, typer.Option(help="Folder for report.html and summary.md (default: the study's folder).")
    ] = None,
) -> None:
    """Analyse a study (finished or not) and write report.html and summary.md into its folder
    (or into --out: a study on a read-only mount is reported elsewhere)."""
    _report(folder, out)


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
        self.study: Any = None  # the study's progress task, once there is work
        self.batches: dict[int, tuple[Any, int]] = {}  # batch id -> (progress task, runs)
        self.batch_updates: dict[int, int] = {}
        self.batch_steps: dict[int, int] = {}

    def __enter__(self) -> _StudyProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress.live.is_started:  # stopping one never started prints an empty line
            self.progress.stop()

    def start(self, store: Any, jobs: list) -> None:
        """Called once the plan is known, and again with each later wave of a sequential
        study: totals in updates x runs of every planned batch, so the study's bar grows with
        each wave (shown only if there is work)."""
        from regspeed.study import runner

        if not jobs:
            return
        if self.study is None:
            self.progress.start()
            self.study = self.progress.add_task("study", total=1.0, detail="compiling")
        runs = store.runs()
        batches = store.batches()
        self.total = sum(batch.total_updates * sum(r.batch == batch.batch_id for r in runs) for batch in batches)
        self.done = {batch.batch_id: batch.updates_done for batch in batches}
        self.sizes = {batch.batch_id: sum(r.batch == batch.batch_id for r in runs) for batch in batches}
        looks = self.spec.looks()
        look = next(iter(runner.planned_seeds(store).values())) // self.spec.seeds  # the baseline's seeds
        title = "study" if len(looks) == 1 else f"study, look {look}/{len(looks)}"
        if store.folder.name == runner.TUNING:  # a tuned study's tuning runs, before its evaluation runs
            title = "tuning"
        self.progress.update(self.study, description=title, total=max(1, self.total), completed=self._completed())
        count = len(batches)
        cells = {row.cell_id: row.label for row in store.cells()}
        cells_of: dict[int, list[str]] = {}
        for run in runs:  # a batch may hold runs of several cells that share its program
            labels = cells_of.setdefault(run.batch, [])
            labels += [] if cells[run.cell] in labels else [cells[run.cell]]
        for job in jobs:
            names = sorted({store_name for store_name in self._conditions(store, job.batch_id)})
            where = f" ({'; '.join(cells_of[job.batch_id])})" if len(cells) > 1 else ""
            label = printable(f"batch {job.batch_id + 1}/{count}{where}: {', '.join(names)}")
            task = self.progress.add_task(
                escape(label if len(label) < 60 else label[:57] + "..."), total=1.0, detail="waiting", start=False
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


STATUS_METRICS = 4  # columns of speed metrics that fit 100 characters


def _status_metrics(speed_metrics: tuple[str, ...], thresholds: dict) -> list[str]:
    """The speed metrics the progress table shows: those with thresholds first, then the
    others, as many as fit."""
    ordered = [m for m in speed_metrics if m in thresholds] + [m for m in speed_metrics if m not in thresholds]
    return ordered[:STATUS_METRICS]


def _print_summary(folder: Path, with_creation: bool = False) -> None:
    """The progress table (and, for ``status``, when the study was created), from one opening
    of the store: everything is read (and checked) before anything is printed."""
    from regspeed.analysis import progress
    from regspeed.report import text
    from regspeed.study import results, runner
    from regspeed.study import store as store_module

    with store_module.Store.open(folder) as store:
        created = store.meta().get("created", "?")
        tuning = folder / runner.TUNING
        pending = results.tuning_pending(store)
        labels = [] if pending else results.cells(store)
        every = [results.load(store, results.speed_metrics(store) if len(labels) == 1 else None, cell)
                 for cell in range(len(labels))]  # fmt: skip
    if with_creation:
        console.print(terminal_text(f"{folder}: study created {created}"), highlight=False)
    if pending:
        first = f"{folder}: tuning first; its evaluation runs are planned once those in {tuning} have finished"
        console.print(terminal_text(first), soft_wrap=True, highlight=False)
        if store_module.exists(tuning):
            _print_summary(tuning)
        return
    for data in every:
        where = f"{folder}" if len(every) == 1 else f"{folder}, cell {data.cell}"
        if data.tuning is not None:
            kept = "; ".join(f"{tuned.condition}: {text.candidate_label(data.tuning.candidates[tuned.chosen])}"
                             for tuned in data.tuning.cells[0].conditions)  # fmt: skip
            console.print(terminal_text(f"{where}: tuned settings ({kept})"), soft_wrap=True, highlight=False)
        _print_progress_table(data, where, progress.table(data))


def _print_progress_table(data: Any, where: str, rows: list) -> None:
    """One cell's progress rows as a table, then its failed runs."""
    table = Table(title=terminal_text(f"{where}: IQM over seeds of the last 10% of the budget"), box=box.SIMPLE_HEAD)
    table.add_column("condition", no_wrap=True)
    table.add_column("runs done", justify="right", no_wrap=True)
    table.add_column("failed", justify="right")
    shown = _status_metrics(data.speed_metrics, data.thresholds)
    for name in shown:  # headers wrap between words (eval / score), numbers never
        table.add_column(name.replace("_", " "), justify="right", min_width=6)
    for row in rows:
        table.add_row(
            terminal_text(row.condition),
            f"{row.finished + row.failed}/{row.runs}" + ("" if row.progress >= 1 else f" ({row.progress:.0%})"),
            str(row.failed) if not row.failed else f"[red]{row.failed}[/]",
            *(_number(row.final[metric]) for metric in shown),
        )
    console.print(table)
    failed = [run for run in data.runs if run.status == "failed"]
    for run in failed:
        who, why = terminal_text(f"{run.condition} seed {run.seed} failed:"), terminal_text(run.error)
        console.print(f"[red]{who}[/] {why}", highlight=False)


def _number(value: float) -> str:
    return f"{value:.3g}" if value == value else "-"


@app.command()
@user_errors_exit_cleanly
def status(folder: StudyFolder) -> None:
    """Show a study's progress: runs finished, failed and pending per condition."""
    _print_summary(folder, with_creation=True)


@app.command()
@user_errors_exit_cleanly
def export(
    folder: StudyFolder,
    format: Annotated[
        str, typer.Option("--format", help="csv (long form, every metric) or npz (rliable-shaped).")
    ] = "csv",
    metric: Annotated[str, typer.Option(help="npz: the metric to export.")] = "score",
    out: Annotated[Path | None, typer.Option(help="Output file (default: DIR/curves.csv or DIR/<metric>.npz).")] = None,
    cell: CellOption = None,
) -> None:
    """Export a study's curves: CSV (condition, seed, metric, step, value; a study with
    factors: cell first) or NPZ shaped as rliable expects (per condition: runs x tasks x
    points; the step axis under 'steps'; one cell of a study with factors)."""
    from regspeed.study import results
    from regspeed.study import store as store_module

    if format not in results.FORMATS:
        raise ConfigError("format", f"must be one of {', '.join(results.FORMATS)} (got {format!r})")
    if out is not None and not out.parent.is_dir():
        raise ConfigError("out", f"folder {out.parent} does not exist; create it or choose another path")
    target = out if out is not None else folder / ("curves.csv" if format == "csv" else f"{metric}.npz")
    with store_module.Store.open(folder) as store:
        index = cell_index(store, cell)
        if format == "npz" and cell is None and len(store.cells()) > 1:
            raise ConfigError("cell", f"an npz holds one cell's runs: choose one with --cell ({_cells_hint(store)})")
        results.export(store, target, format, metric, index)
    console.print(f"wrote {target}")
