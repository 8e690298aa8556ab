"""Batching across cells: a tuned study's runs with their cells batched together, against
the same study planned cell by cell.

A study's tuning candidates of the learning rate (and a ``learning_rate`` factor, and the
rates tuned conditions keep) compile to one program, so the runner batches their runs
together (:func:`regspeed.study.runner.plan_parts`), each run at its own rate. The baseline
plans every cell on its own, as the runner did before, by making the cell part of
:func:`runner.shared_program`'s key. Both run the same tuned spec (``--spec``; default: PPO
on 6 x 6 ``features`` with 3 learning rates, 3 tuning seeds, 3 evaluation seeds, the
baseline and L2) from scratch into temporary folders in this process, alternating
``--repeats`` times (the first pair also compiles; later pairs reuse the jit cache); the
table shows each one's batches and wall times and the ratio of the medians.

    .venv/bin/python benchmarks/tuning_batches.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.table import Table

import regspeed  # noqa: F401  (sets XLA flags before JAX starts)
from regspeed.analysis import tuning
from regspeed.study import runner
from regspeed.study import spec as spec_module
from regspeed.study import store as store_module

SPEC = """
name = "tuning-batches"
task = "snake-ppo"
seeds = 3
budget = 40_960

[[regularizers]]
kind = "l2"
strengths = [1e-3]

[config.env]
rows = 6
cols = 6
observation = "features"

[evaluation]
every_updates = 0

[tuning]
seeds = 3
candidates = { learning_rate = [3e-4, 1e-3, 3e-3] }
"""


@contextmanager
def cell_by_cell() -> Iterator[None]:
    """Plan as if no two cells shared a program: the cell's spec (its learning rate) joins the key."""
    shared = runner.shared_program
    runner.shared_program = lambda spec, regularizer: (*shared(spec, regularizer), spec.model_dump_json())
    try:
        yield
    finally:
        runner.shared_program = shared


def timed(spec: spec_module.Spec, text: str, per_cell: bool) -> tuple[float, int]:
    """Seconds to run the tuned study from scratch, and its batches (tuning and evaluation)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "study"
        start = time.perf_counter()
        if per_cell:
            with cell_by_cell():
                runner.run(spec, out, text, choose=tuning.choose, tensorboard=False)
        else:
            runner.run(spec, out, text, choose=tuning.choose, tensorboard=False)
        seconds = time.perf_counter() - start
        with store_module.Store.open(out) as store, store_module.Store.open(out / runner.TUNING) as tuned:
            return seconds, len(store.batches()) + len(tuned.batches())


def main() -> None:
    """Time the two plans, alternating, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, help="a tuned study spec (default: the small PPO one above)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    text = args.spec.read_text() if args.spec else SPEC
    spec = spec_module.parse(text)
    seconds: dict[bool, list[float]] = {True: [], False: []}
    batches: dict[bool, int] = {}
    for _ in range(args.repeats):
        for per_cell in (True, False):
            took, batches[per_cell] = timed(spec, text, per_cell)
            seconds[per_cell].append(took)
    table = Table(title="A tuned study: batched across cells vs cell by cell (median of repeats after the first)")
    for column in ("plan", "batches", "wall s (each repeat)", "median s", "vs cell by cell"):
        table.add_column(column)
    medians = {k: statistics.median(v[1:] or v) for k, v in seconds.items()}
    for per_cell, name in ((True, "cell by cell (before)"), (False, "across cells")):
        shown = ", ".join(f"{s:.1f}" for s in seconds[per_cell])
        ratio = f"{medians[True] / medians[per_cell]:.2f}x"
        table.add_row(name, str(batches[per_cell]), shown, f"{medians[per_cell]:.1f}", ratio)
    Console().print(table)


if __name__ == "__main__":
    main()
