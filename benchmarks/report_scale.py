"""A report of a 10,000-run study: time, peak memory and the size of what it writes.

The study is real in every way but its numbers: the default spec with more strengths and
seeds (``--conditions`` conditions x ``--seeds`` seeds, 25 x 400 = 10,000 runs by default),
its store created by the runner's own path, every metric its learner records stored through
``Store.record_chunk`` chunk by chunk, with synthetic curves (a score that rises along a
logistic curve whose speed differs per condition and per seed, censored for some runs;
noise for the other metrics). Then ``regspeed report`` (``report.write``) reads it,
analyses it and writes the HTML, Markdown and terminal table, as a user's would.

``--map`` makes it a study with factors (the answer map): ``board = [6, 8, 10, 12]`` x
``algorithm = ["ppo", "dqn"]``, 8 cells of ``--conditions`` x ``--seeds`` each (25 x 50 =
10,000 runs by default), where a condition's speed-up changes with the board (faster on small
boards, slower on large ones, for some conditions).

    .venv/bin/python benchmarks/report_scale.py                  # 10,000 runs
    .venv/bin/python benchmarks/report_scale.py --seeds 40       # 1,000 runs
    .venv/bin/python benchmarks/report_scale.py --map            # 10,000 runs in 8 cells
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

import regspeed  # noqa: F401  (sets XLA flags before JAX starts)
from regspeed.learn.regularizers import Regularizer
from regspeed.study import runner
from regspeed.study import spec as spec_module
from regspeed.study import store as store_module

KINDS = ("l1", "l2", "weight_decay", "l2_init")


MAP_FACTORS = '\n[factors]\nboard = [6, 8, 10, 12]\nalgorithm = ["ppo", "dqn"]\n'
DQN_TABLE = "\n[config.dqn]\nnum_envs = 64\nrollout_steps = 32\n"  # 2,048 env steps per update: 292 points per run


def big_spec(conditions: int, seeds: int, folder: Path, factors: bool = False) -> tuple[spec_module.Spec, str]:
    """The default study with ``conditions - 1`` regularized conditions (strengths spread over
    the kinds) and ``seeds`` seeds, as a spec and its TOML text (written into ``folder``);
    with ``factors``, of :data:`MAP_FACTORS` (each cell a study of that size)."""
    per_kind = -(-(conditions - 1) // len(KINDS))
    lines = [line for line in spec_module.default_text().splitlines() if not line.startswith("seeds")]
    text = "\n".join(lines).split("[[regularizers]]")[0]
    text = f"seeds = {seeds}\n" + text
    remaining = conditions - 1
    for kind in KINDS:
        count = min(per_kind, remaining)
        remaining -= count
        if count:
            text += f'\n[[regularizers]]\nkind = "{kind}"\nstrengths = {{ low = 1e-5, high = 1e-1, num = {count} }}\n'
    evaluation = spec_module.default_text().split("[evaluation]")[1]
    text += "\n[evaluation]" + evaluation
    if factors:
        text = text.replace("\n[[regularizers]]", DQN_TABLE + "\n[[regularizers]]", 1) + MAP_FACTORS
    path = folder / "big.toml"
    path.write_text(text)
    return spec_module.load(path), text


def _tilt(spec: spec_module.Spec, values: dict) -> float:
    """How much faster a condition that changes with the cell is in this one: 1.16x at the
    first factor's first value down to 0.86x at its last (1 without factors)."""
    found = spec_module.factors(spec)
    if not found:
        return 1.0
    levels = found[0].values
    return float(np.exp(0.3 * (0.5 - levels.index(values[found[0].name]) / max(1, len(levels) - 1))))


def fill(store: store_module.Store, spec: spec_module.Spec, rng: np.random.Generator) -> int:
    """Synthetic curves for every run of every cell, chunk by chunk as the runner writes them;
    values written. A condition's speed is drawn once; in a study with factors, half the
    conditions also change with the first factor (:func:`_tilt`)."""
    cells = spec_module.cells(spec)
    chunk = spec.execution.chunk_updates
    every = spec.evaluation.every_updates
    speed_of = {condition["name"]: rng.lognormal(0, 0.2) for condition in store.conditions()}
    turns = {name: index % 2 == 1 for index, name in enumerate(speed_of)}  # these change with the cell
    runs = store.runs()
    written = 0
    for batch in store.batches():
        cell = cells[batch.cell]
        learner = spec_module.learner_of(cell.spec)
        names = [metric.name for metric in learner.metrics]
        setup = spec_module.setup(cell.spec, Regularizer())
        members = sorted((run for run in runs if run.batch == batch.batch_id), key=lambda run: run.position)
        tilt = _tilt(spec, cell.values)
        speed = np.asarray(
            [speed_of[run.condition] * (tilt if turns[run.condition] else 1) * rng.lognormal(0, 0.15)
             for run in members]
        )  # fmt: skip
        per_update = learner.steps_per_update(setup)
        store.start_batch(batch.batch_id)
        done = 0
        while done < batch.total_updates:
            updates = np.arange(done + 1, min(done + chunk, batch.total_updates) + 1)
            done = int(updates[-1])
            steps = updates * per_update
            positions = np.repeat(np.arange(len(members)), len(updates))
            all_steps = np.tile(steps, len(members))
            progress = np.outer(speed, updates / batch.total_updates)
            curves = {}
            for name in names:
                if name.startswith("eval_"):
                    keep = (updates % every) == 0
                    if not keep.any():
                        continue
                    mask = np.tile(keep, len(members))
                    values = 20 / (1 + np.exp(-8 * (progress - 0.5))) + rng.normal(0, 1, progress.shape)
                    curves[name] = (positions[mask], all_steps[mask], values.ravel()[mask])
                    continue
                if name == "env_steps":
                    values = np.tile(steps, (len(members), 1)).astype(float)
                elif name == "score":
                    values = 20 / (1 + np.exp(-8 * (progress - 0.5))) + rng.normal(0, 0.5, progress.shape)
                elif name == "steps":
                    values = 150 / (1 + np.exp(-8 * (progress - 0.5))) + rng.normal(0, 3, progress.shape)
                else:
                    values = rng.normal(0, 1, progress.shape)
                curves[name] = (positions, all_steps, values.ravel())
            written += sum(len(values) for _, _, values in curves.values())
            checkpoint = f"batch-{batch.batch_id:04d}-update-{done:07d}.npz"
            store.record_chunk(
                batch.batch_id, done, curves, list(range(len(members))), {}, checkpoint, 1.0,
                done >= batch.total_updates,
            )  # fmt: skip
    return written


def main() -> None:
    """Build the study, write its report, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conditions", type=int, default=25)
    parser.add_argument("--seeds", type=int, default=None, help="per condition (default: 400; with --map 50 per cell)")
    parser.add_argument("--map", action="store_true", help="a study with factors: 4 boards x 2 algorithms")
    args = parser.parse_args()
    seeds = args.seeds or (50 if args.map else 400)
    console = Console()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as temporary:
        spec, text = big_spec(args.conditions, seeds, Path(temporary), factors=args.map)
        folder = Path(temporary) / "study"
        with console.status("building the study..."):
            start = time.perf_counter()
            with runner._open_or_create(spec, folder, text) as store:
                values = fill(store, spec, rng)
                runs = len(store.runs())
            built = time.perf_counter() - start
        from regspeed.report import report as report_module

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with console.status("writing the report..."):
            start = time.perf_counter()
            written = report_module.write(folder)
            seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        html = written.html_path.stat().st_size
        store_size = (folder / store_module.DATABASE).stat().st_size
    cells = len(spec_module.cells(spec))
    per_cell = f"{cells} cells x " if cells > 1 else ""
    table = Table(title=f"report of {runs:,} runs ({per_cell}{args.conditions} conditions x {seeds} seeds)")
    for column in ("", "value"):
        table.add_column(column, justify="right")
    table.add_row("values stored", f"{values:,} ({store_size / 2**20:.0f} MiB store, built in {built:.0f} s)")
    table.add_row("report.write (read, analyse, figures, HTML, Markdown)", f"{seconds:.1f} s")
    table.add_row("HTML size", f"{html / 2**20:.1f} MiB")
    table.add_row("peak RSS (process)", f"{peak / 2**20:.2f} GiB (before the report: {before / 2**20:.2f} GiB)")
    console.print(table)


if __name__ == "__main__":
    main()
