"""A report of a 10,000-run study: time, peak memory and the size of what it writes.

The study is real in every way but its numbers: the default spec with more strengths and
seeds (``--conditions`` conditions x ``--seeds`` seeds, 25 x 400 = 10,000 runs by default),
its store created by the runner's own path, every metric PPO records stored through
``Store.record_chunk`` chunk by chunk, with synthetic curves (a score that rises along a
logistic curve whose speed differs per condition and per seed, censored for some runs;
noise for the other metrics). Then ``regspeed report`` (``report.write``) reads it,
analyses it and writes the HTML, Markdown and terminal table, as a user's would.

    .venv/bin/python benchmarks/report_scale.py                  # 10,000 runs
    .venv/bin/python benchmarks/report_scale.py --seeds 40       # 1,000 runs
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
from regspeed.study import runner
from regspeed.study import spec as spec_module
from regspeed.study import store as store_module

KINDS = ("l1", "l2", "weight_decay", "l2_init")


def big_spec(conditions: int, seeds: int, folder: Path) -> tuple[spec_module.Spec, str]:
    """The default study with ``conditions - 1`` regularized conditions (strengths spread over
    the kinds) and ``seeds`` seeds, as a spec and its TOML text (written into ``folder``)."""
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
    path = folder / "big.toml"
    path.write_text(text)
    return spec_module.load(path), text


def fill(store: store_module.Store, spec: spec_module.Spec, rng: np.random.Generator) -> int:
    """Synthetic curves for every run, chunk by chunk as the runner writes them; values written."""
    learner = spec_module.learner_of(spec)
    names = [metric.name for metric in learner.metrics]
    chunk = spec.execution.chunk_updates
    every = spec.evaluation.every_updates
    speed_of = {condition["name"]: rng.lognormal(0, 0.2) for condition in store.conditions()}
    runs = store.runs()
    written = 0
    for batch in store.batches():
        members = sorted((run for run in runs if run.batch == batch.batch_id), key=lambda run: run.position)
        speed = np.asarray([speed_of[run.condition] * rng.lognormal(0, 0.15) for run in members])
        per_update = int(store.meta()["budget_steps"]) // batch.total_updates
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
    parser.add_argument("--seeds", type=int, default=400)
    args = parser.parse_args()
    console = Console()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as temporary:
        spec, text = big_spec(args.conditions, args.seeds, Path(temporary))
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
    table = Table(title=f"report of {runs:,} runs ({args.conditions} conditions x {args.seeds} seeds)")
    for column in ("", "value"):
        table.add_column(column, justify="right")
    table.add_row("values stored", f"{values:,} ({store_size / 2**20:.0f} MiB store, built in {built:.0f} s)")
    table.add_row("report.write (read, analyse, figures, HTML, Markdown)", f"{seconds:.1f} s")
    table.add_row("HTML size", f"{html / 2**20:.1f} MiB")
    table.add_row("peak RSS (process)", f"{peak / 2**20:.2f} GiB (before the report: {before / 2**20:.2f} GiB)")
    console.print(table)


if __name__ == "__main__":
    main()
