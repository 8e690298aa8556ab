"""Calibration: run the example studies whose answers the literature knows, and check them.

1. ``examples/linreg.toml`` (condition number 1000): every L2 strength reaches 99.9% of the
   way to its own optimum in fewer updates than no L2 (verdict ``faster``).
2. ``examples/modadd.toml`` (grokking): weight decay reaches 95% test accuracy at least 3x
   sooner than no decay, or no decay never does within the budget while decay does; and
   train accuracy 95% is not reached sooner with decay.
3. ``examples/continual-digits.toml`` (permuted digits, 30 tasks; Dohare et al. 2024, Kumar
   et al. 2023): the baseline takes longer task after task (its slope of log time per task
   has a 95% interval above 0, and its last tasks take longer than its first relearned
   ones); L2 towards the initial weights and shrink-and-perturb relearn faster (verdict
   ``faster``), their last tasks are quicker than the baseline's, and their slope is below
   the baseline's (paired, Holm). Measured by the report's relearning analysis
   (:mod:`regspeed.analysis.phases`).
4. ``examples/digits.toml`` and ``examples/teacher.toml``: reported as they come out.

Each study runs into ``--out/<name>`` (resumable, with its report.html there).

    .venv/bin/python benchmarks/known_results.py                 # all five
    .venv/bin/python benchmarks/known_results.py --only linreg modadd
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

import regspeed  # noqa: F401  (sets XLA flags before JAX starts)
from regspeed.analysis import compare, phases, stats
from regspeed.report import report, text
from regspeed.study import runner
from regspeed.study import spec as spec_module

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
STUDIES = ("linreg", "modadd", "continual-digits", "digits", "teacher")
EDGE_TASKS = 5  # continual-digits: the first relearned tasks (1-5) against the last five


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


def edge_times(found: phases.PhaseTimes, count: int) -> tuple[stats.Interval, stats.Interval]:
    """IQM over runs of each run's mean time over its first ``count`` relearning phases
    (1 .. count) and over its last ``count`` phases (a phase never reached: its length)."""
    capped = found.capped()
    return (stats.iqm_estimate(np.nanmean(capped[:, 1 : 1 + count], axis=1)),
            stats.iqm_estimate(np.nanmean(capped[:, -count:], axis=1)))  # fmt: skip


def _updates(interval: stats.Interval) -> str:
    return f"{interval.value:.0f} [{interval.low:.0f}, {interval.high:.0f}]"


def _per_phase(interval: stats.Interval) -> str:
    low, high = (math.expm1(x) * 100 for x in (interval.low, interval.high))
    return f"{math.expm1(interval.value) * 100:+.1f}% [{low:+.1f}, {high:+.1f}] per task"


def check_continual(analysis: compare.StudyAnalysis) -> list[tuple[str, bool, str]]:
    """The baseline loses speed task after task; every regularizer relearns faster and keeps it."""
    found = analysis.phases
    if found is None:
        return [("continual-digits: a relearning analysis", False, "the study has no phases")]
    base = found.conditions[0]
    base_early, base_late = edge_times(found.runs[base.condition], EDGE_TASKS)
    where = f"updates to {found.threshold:g} {found.metric} from each task's start (IQM [95% CI])"
    checks = [(
        "continual-digits: the baseline takes longer task after task",
        base.slope.low > 0 and base_late.value > base_early.value,
        f"log-time slope {_per_phase(base.slope)}; tasks 1-{EDGE_TASKS}: {_updates(base_early)}, "
        f"last {EDGE_TASKS}: {_updates(base_late)} {where}",
    )]  # fmt: skip
    for row in found.conditions[1:]:
        early, late = edge_times(found.runs[row.condition], EDGE_TASKS)
        relearning, change = row.relearning_vs_baseline, row.slope_change
        assert relearning is not None and change is not None
        speedup = relearning.speedup
        evidence = (
            f"relearning {speedup.value:.2f}x [{speedup.low:.2f}, {speedup.high:.2f}] "
            f"(p_Holm {relearning.p_holm:.3g}); "
            f"last {EDGE_TASKS} tasks: {_updates(late)} vs baseline {_updates(base_late)}; "
            f"tasks 1-{EDGE_TASKS}: {_updates(early)}"
        )
        faster = relearning.verdict == "faster" and late.value < base_late.value
        checks.append((f"continual-digits: {row.condition} relearns faster, its last tasks sooner", faster, evidence))
        kept = change.high < 0 and row.slope_p_holm < 0.05
        evidence = (
            f"log-time slope {_per_phase(row.slope)}; minus the baseline's: {change.value:+.4f} "
            f"[{change.low:+.4f}, {change.high:+.4f}] (p_Holm {row.slope_p_holm:.3g})"
        )
        label = f"continual-digits: {row.condition} keeps its speed (slope below the baseline's)"
        checks.append((label, kept, evidence))
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
        checks = {"linreg": check_linreg, "modadd": check_modadd, "continual-digits": check_continual}.get(name)
        if checks is None:
            console.print(written.table)
            console.print(written.model.answer, soft_wrap=True)
            continue
        for label, passed, evidence in checks(written.analysis):
            table.add_row(label, "[green]PASS[/]" if passed else "[red]FAIL[/]", evidence)
    console.print(table)


if __name__ == "__main__":
    main()
