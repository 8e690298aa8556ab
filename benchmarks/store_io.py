"""Store scale: writing and reading ``--runs`` runs x ``--points`` points x ``--metrics`` metrics.

Writes go through the runner's path (:meth:`Store.record_chunk`: one transaction per
chunk of a batch), with batches of ``--batch`` runs and chunks of ``--chunk`` points; the
values are float32 numbers (as JAX gives them to the runner) in float64 arrays, the steps
evenly spaced. Reads: one metric of every run (``Store.curve``), the same as per-condition
arrays (``results.curves``), a study's data as the analysis reads it (``results.load`` of
one metric), and the whole study as CSV (``results.export``). Prints times, values per
second, the file's size and bytes per value, and the process's peak memory (RSS).

    .venv/bin/python benchmarks/store_io.py                      # 10,000 x 1,000 x 10
    .venv/bin/python benchmarks/store_io.py --runs 1000          # a tenth of it
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from regspeed.study import results
from regspeed.study import store as store_module


def create(folder: Path, runs: int, batch: int, points: int) -> store_module.Store:
    """An empty store planned like a study: 10 conditions, runs split into batches."""
    conditions = [(f"c{i}", "l2", float(i), json.dumps({"kind": "l2"})) for i in range(10)]
    per_condition = runs // len(conditions)
    planned = []
    for index in range(runs):
        condition, seed = divmod(index, per_condition)
        planned.append(store_module.PlannedRun(f"c{condition}", seed, index // batch, index % batch))
    batches = [([f"c{(b * batch) // per_condition}"], points) for b in range((runs + batch - 1) // batch)]
    meta = {"spec_json": "{}", "speed_metrics": json.dumps(["metric_2"]), "budget_steps": str(points * 1000)}
    return store_module.Store.create(folder, meta, conditions, batches, planned)


def write(store: store_module.Store, runs: int, batch: int, points: int, metrics: int, chunk: int) -> int:
    """Record every chunk of every batch; returns the number of values written."""
    rng = np.random.default_rng(0)
    rows = 0
    for first in range(0, runs, batch):
        size = min(batch, runs - first)
        for done in range(chunk, points + 1, chunk):
            positions = np.repeat(np.arange(size), chunk)
            steps = np.tile(np.arange(done - chunk + 1, done + 1) * 1000, size)
            curves = {
                f"metric_{m}": (positions, steps, rng.random(size * chunk, np.float32).astype(np.float64))
                for m in range(metrics)
            }
            live = list(range(size))
            name = f"batch-{first // batch:04d}-update-{done:07d}.npz"  # our checkpoint names (checked on read)
            store.record_chunk(first // batch, done, curves, live, {}, name, 1.0, done == points)
            rows += size * chunk * metrics
    return rows


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=1_000)
    parser.add_argument("--metrics", type=int, default=10)
    parser.add_argument("--batch", type=int, default=100, help="runs per batch")
    parser.add_argument("--chunk", type=int, default=100, help="points per chunk (one transaction)")
    args = parser.parse_args()
    console = Console()
    table = Table(title=f"Store: {args.runs:,} runs x {args.points:,} points x {args.metrics} metrics")
    for name in ("operation", "seconds", "values/s", "size"):
        table.add_column(name, justify="right")
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        store = create(folder, args.runs, args.batch, args.points)
        with console.status("writing..."):
            start = time.perf_counter()
            rows = write(store, args.runs, args.batch, args.points, args.metrics, args.chunk)
            seconds = time.perf_counter() - start
        store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = (folder / store_module.DATABASE).stat().st_size
        table.add_row("write (record_chunk)", f"{seconds:.1f}", f"{rows / seconds:,.0f}", f"{size / 2**30:.2f} GiB")
        table.add_row("bytes per value", "", "", f"{size / rows:.2f} B")
        per_metric = rows // args.metrics
        with console.status("reading..."):
            start = time.perf_counter()
            store.curve("metric_0")
            seconds = time.perf_counter() - start
            table.add_row("read one metric, all runs", f"{seconds:.1f}", f"{per_metric / seconds:,.0f}", "")
            start = time.perf_counter()
            results.curves(store, "metric_1")
            seconds = time.perf_counter() - start
            table.add_row("same, as arrays per condition", f"{seconds:.1f}", f"{per_metric / seconds:,.0f}", "")
            results.load(store, ())  # once untimed: its first call imports the learners (JAX)
            start = time.perf_counter()
            results.load(store)
            seconds = time.perf_counter() - start
            table.add_row("study data (results.load)", f"{seconds:.1f}", f"{per_metric / seconds:,.0f}", "")
            start = time.perf_counter()
            results.export(store, folder / "all.csv", "csv")
            seconds = time.perf_counter() - start
            csv_size = (folder / "all.csv").stat().st_size
            table.add_row(
                "export everything to CSV", f"{seconds:.1f}", f"{rows / seconds:,.0f}", f"{csv_size / 2**30:.2f} GiB"
            )
        store.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    table.add_row("peak memory (RSS)", "", "", f"{peak / 2**30:.2f} GiB")
    console.print(table)


if __name__ == "__main__":
    main()
