"""Calibration: run the example studies whose answers the literature knows, and check them.

1. ``examples/linreg.toml`` (condition number 1000): every L2 strength reaches 99.9% of the
   way to its own optimum in fewer updates than no L2 (verdict ``faster``).
2. ``examples/modadd.toml`` (grokking): weight decay reaches 95% test accuracy at least 3x
   sooner than no decay, or no decay never does within the budget while decay does; and
   train accuracy 95% is not reached sooner with decay.
3. ``examples/digits.toml`` and ``examples/teacher.toml``: reported as they come out.

Each study runs into ``--out/<name>`` (resumable, with its report.html there).

    .venv/bin/python benchmarks/known_results.py                 # all four
    .venv/bin/python benchmarks/known_results.py --only linreg modadd
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import regspeed  # noqa: F401  (sets XLA flags before JAX starts)
from regspeed.analysis import compare
from regspeed.report import report, text
from regspeed.study import runner
from regspeed.study import spec as spec_module

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STUDIES = ("linreg", "modadd", "digits", "teacher")


def run_study(name: str, out: Path) -> tuple[report.Report, float]:
    """Run (or resume) an example study and report it; returns the report and the seconds it trained."""
    path = EXAMPLES / f"{name}.toml"
    start = time.perf_counter()
    runner.run(spec_module.load(path), out / name, path.read_text())
    seconds = time.perf_counter() - start
    return report.write(out / name), seconds


def comparison(analysis: compare.StudyAnalysis, condition: str, metric: str, threshold: float) -> compare.Comparison:
    """The comparison of one condition at one metric and threshold."""
    return next(
        c for c in analysis.comparisons if c.condition == condition and c.metric == metric and c.threshold == threshold
    )


def check_linreg(analysis: compare.StudyAnalysis) -> list[tuple[str, bool, str]]:
    """Every L2 condition reaches its own optimum sooner."""
    checks = []
    for condition in analysis.conditions[1:]:
        found = comparison(analysis, condition.name, "optimum_progress", 0.999)
        detail = text.sentence(found, analysis)
        checks.append((f"linreg: {condition.name} reaches its optimum sooner", found.verdict == "faster", detail))
    return checks


def check_modadd(analysis: compare.StudyAnalysis) -> list[tuple[str, bool, str]]:
    """Weight decay generalizes >= 3x sooner (or alone at all), without fitting sooner."""
    checks = []
    for condition in analysis.conditions[1:]:
        test = comparison(analysis, condition.name, "test_accuracy", 0.95)
        ratio = test.speedup.value
        only_decay = math.isinf(test.baseline_median_steps) and test.reached > test.runs / 2
        generalizes = test.verdict == "faster" and (ratio >= 3.0 or only_decay)
        checks.append((f"modadd: {condition.name} reaches 95% test accuracy >= 3x sooner", generalizes,
                       text.sentence(test, analysis)))  # fmt: skip
        train = comparison(analysis, condition.name, "train_accuracy", 0.95)
        checks.append((f"modadd: {condition.name} does not fit the training set sooner",
                       train.verdict != "faster", text.sentence(train, analysis)))  # fmt: skip
    return checks


def main() -> None:
    """Run the studies and print the checks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=STUDIES, default=list(STUDIES))
    parser.add_argument("--out", type=Path, default=Path("runs/known"))
    args = parser.parse_args()
    console = Console()
    table = Table(title="Known results", show_lines=True)
    for column in ("check", "result", "evidence"):
        table.add_column(column)
    for name in args.only:
        with console.status(f"running examples/{name}.toml ..."):
            written, seconds = run_study(name, args.out)
        console.print(f"{name}: {seconds:.0f} s; report at {written.html_path}")
        checks = {"linreg": check_linreg, "modadd": check_modadd}.get(name)
        if checks is None:
            console.print(written.table)
            console.print(written.model.answer, soft_wrap=True)
            continue
        for label, passed, evidence in checks(written.analysis):
            table.add_row(label, "[green]PASS[/]" if passed else "[red]FAIL[/]", evidence)
    console.print(table)


if __name__ == "__main__":
    main()
