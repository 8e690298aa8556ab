"""The report of a study: ``report.html`` (self-contained), ``summary.md`` and a terminal table.

The report states the question, the setup, the verdict per condition, the answer in plain
words with its numbers, the evidence (figures), the caveats, and the command that
reproduces it. It works on a partial study (incomplete conditions are marked) and refuses
a missing or damaged store with a clear error.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
from pathlib import Path

import numpy as np
from rich.table import Table

from regspeed.analysis import compare
from regspeed.analysis.compare import Comparison, StudyAnalysis
from regspeed.envs import render
from regspeed.errors import ConfigError
from regspeed.report import plots
from regspeed.study import results, tasks
from regspeed.study.store import Store

QUESTION = "Does L1/L2 regularization make a neural network learn faster?"
METRIC_WORDS = {
    "score": "training score (food per episode)",
    "steps": "survival (steps per training episode)",
    "eval_score": "greedy evaluation score",
    "eval_steps": "greedy evaluation survival",
    "train_accuracy": "training accuracy",
    "test_accuracy": "test accuracy",
    "train_r2": "training R^2",
    "test_r2": "test R^2",
    "optimum_progress": "progress towards its own optimum",
}


@dataclasses.dataclass(frozen=True)
class Figure:
    """A titled PNG with a caption."""

    title: str
    caption: str
    png: bytes


@dataclasses.dataclass(frozen=True)
class Report:
    """What :func:`write` produced."""

    html_path: Path
    markdown_path: Path
    table: Table
    analysis: StudyAnalysis


def _number(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "never" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def _steps(value: float) -> str:
    return "not reached" if math.isinf(value) else f"{value:,.0f}"


def _ratio(comparison: Comparison) -> str:
    interval = comparison.speedup
    if comparison.reached == 0:
        return "never reached"
    if math.isinf(interval.value):
        return "only this condition reached it"

    def bound(value: float) -> str:
        return "inf" if math.isinf(value) else _number(value, 2)

    return f"{_number(interval.value, 2)}x [{bound(interval.low)}, {bound(interval.high)}]"


def sentence(comparison: Comparison, analysis: StudyAnalysis) -> str:
    """The plain-language result of one comparison."""
    metric = METRIC_WORDS.get(comparison.metric, comparison.metric)
    target = f"a {metric} of {comparison.threshold:g}"
    p = f"p = {_number(comparison.p_holm, 2)} after Holm correction"
    details = (
        f"speed-up {_ratio(comparison)}; median {_steps(comparison.median_steps)} vs "
        f"{_steps(comparison.baseline_median_steps)} {analysis.step_unit}; "
        f"{comparison.reached}/{comparison.runs} runs reached it"
    )
    if comparison.verdict == "faster":
        head = f"{comparison.condition} reached {target} sooner than the baseline"
    elif comparison.verdict == "slower":
        head = f"{comparison.condition} reached {target} later than the baseline, or never"
    else:
        head = f"{comparison.condition}: no detectable difference in the time to reach {target}"
    return f"{head} ({details}), {p}."


def opposition_sentence(opposition: compare.Opposition) -> str:
    """How strongly the regularizer's gradient opposed the task's."""
    return (
        f"{opposition.condition}: the regularizer's gradient pointed against the task's in "
        f"{opposition.opposing_share:.0%} of updates (mean cosine {opposition.mean_cosine:+.3f})."
    )


def headline(analysis: StudyAnalysis) -> str:
    """One paragraph answering the question for this study."""
    if not analysis.primary:
        return "No thresholds were set for any metric, so learning speed was not compared."
    first = next(iter(analysis.primary.values()))
    counts = {
        verdict: [c.condition for c in analysis.primary.values() if c.verdict == verdict]
        for verdict in ("faster", "slower", "no detectable difference")
    }
    parts = [
        f"Measured as the {analysis.step_unit} needed to reach a "
        f"{METRIC_WORDS.get(first.metric, first.metric)} of {first.threshold:g}, with {analysis.seeds} seeds per "
        f"condition and Holm's correction over all {len(analysis.comparisons)} comparisons:"
    ]
    for verdict, names in counts.items():
        if names:
            parts.append(f"{verdict}: {', '.join(names)}.")
    if not counts["faster"]:
        parts.append("No regularizer made learning detectably faster in this study.")
    return " ".join(parts)


VERDICT_HEADER = ["condition", "verdict", "speed-up [95% CI]", "p (Holm)", "reached", "final [95% CI]", "P(AUC better)"]


def verdict_title(analysis: StudyAnalysis) -> str:
    """What the verdict table compares."""
    first = next(iter(analysis.primary.values()), None)
    return f"{analysis.name}: time to {first.metric} {first.threshold:g} vs baseline" if first else analysis.name


def verdict_rows(analysis: StudyAnalysis) -> list[list[str]]:
    """One row per condition: its primary comparison and final performance."""
    first = next(iter(analysis.primary.values()), None)
    metric = first.metric if first else next(iter(analysis.summaries), None)
    summaries = {s.condition: s for s in analysis.summaries.get(metric, [])}
    rows = []
    for condition in analysis.conditions:
        name = condition["name"]
        summary = summaries.get(name)
        final = (
            f"{_number(summary.final.value)} [{_number(summary.final.low)}, {_number(summary.final.high)}]"
            if summary
            else "-"
        )
        label = name + ("" if name not in analysis.incomplete else " (incomplete)")
        comparison = analysis.primary.get(name)
        if comparison is None:
            rows.append([label, "baseline", "", "", "", final, ""])
            continue
        auc = comparison.auc_improvement
        rows.append(
            [
                label,
                comparison.verdict,
                _ratio(comparison),
                _number(comparison.p_holm, 2),
                f"{comparison.reached}/{comparison.runs}",
                final,
                f"{_number(auc.value, 2)} [{_number(auc.low, 2)}, {_number(auc.high, 2)}]",
            ]
        )
    return rows


def per_metric(analysis: StudyAnalysis) -> tuple[list[str], list[list[str]]]:
    """Header and rows: every metric with thresholds, at its middle threshold, side by side
    (fitting vs generalization for supervised tasks; score vs survival for Snake)."""
    middles = {metric: levels[len(levels) // 2] for metric, levels in analysis.thresholds.items() if levels}
    found = {(c.condition, c.metric): c for c in analysis.comparisons if middles.get(c.metric) == c.threshold}
    header = ["condition", *(f"{metric} {level:g}" for metric, level in middles.items())]
    rows = []
    for condition in analysis.conditions[1:]:
        cells = [condition["name"]]
        for metric in middles:
            comparison = found.get((condition["name"], metric))
            cells.append(f"{comparison.verdict}: {_ratio(comparison)}" if comparison else "-")
        rows.append(cells)
    return header, rows


def verdict_table(analysis: StudyAnalysis) -> Table:
    """The verdict table for the terminal."""
    table = Table(title=verdict_title(analysis))
    for index, name in enumerate(VERDICT_HEADER):
        table.add_column(name, justify="left" if index == 0 else "right", no_wrap=index == 0)
    colours = {"faster": "green", "slower": "red"}
    for row in verdict_rows(analysis):
        colour = colours.get(row[1])
        table.add_row(row[0], f"[{colour}]{row[1]}[/]" if colour else row[1], *row[2:])
    return table


def _html_table(header: list[str], rows: list[list[str]], verdict_column: int) -> list[str]:
    escape = html.escape
    parts = ["<table><tr>", *[f"<th>{escape(name)}</th>" for name in header], "</tr>"]
    for row in rows:
        cells = [
            f"<td class='{escape(cell)}'>{escape(cell)}</td>" if i == verdict_column else f"<td>{escape(cell)}</td>"
            for i, cell in enumerate(row)
        ]
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    return parts


def figures(store: Store, analysis: StudyAnalysis) -> list[Figure]:
    """The report's figures, rendered."""
    made = []
    for metric in analysis.summaries:
        curves = {c.condition: c for c in results.curves(store, metric)}
        made.append(
            Figure(
                f"Learning curves: {METRIC_WORDS.get(metric, metric)}",
                "IQM over runs (smoothed with a trailing mean over 5% of the points) with a 95% bootstrap band.",
                plots.to_png(plots.curves_by_kind(analysis, curves, metric, smooth=not metric.startswith("eval"))),
            )
        )
    km = plots.kaplan_meier(analysis)
    if km is not None:
        first = next(iter(analysis.primary.values()))
        made.append(
            Figure(
                "Time to threshold (Kaplan-Meier)",
                f"Share of runs that have not yet reached {first.metric} {first.threshold:g}; runs that never "
                "reach it stay in the curve up to the budget (censored). Lower and further left is faster.",
                plots.to_png(km),
            )
        )
    primary_metric = next(iter(analysis.primary.values())).metric if analysis.primary else None
    for metric in [m for m in (primary_metric,) if m in analysis.summaries]:
        made.append(
            Figure(
                "Sensitivity to strength",
                "Left: final performance (IQM, 95% CI) against strength, baseline band in grey. "
                "Right: speed-up to the primary threshold (> 1 is faster).",
                plots.to_png(plots.sensitivity(analysis, metric)),
            )
        )
        made.append(
            Figure(
                "Final performance",
                "IQM over runs of the mean over the last 10% of the budget, with 95% bootstrap intervals.",
                plots.to_png(plots.final_intervals(analysis, metric)),
            )
        )
    for metric, title, caption, zero in (
        ("weight_l2", "Weight L2 norm", "L2 norm of the regularized weights during training (IQM, 95% band).", False),
        ("near_zero_fraction", "Sparsity", "Fraction of weights with |w| < 1e-3 during training.", False),
        (
            "grad_cosine",
            "Do the objectives compete?",
            "Cosine between the task-loss gradient and the regularizer's gradient (or decay direction). "
            "Below 0 the regularizer pulls against the task; near 0 it is orthogonal to it.",
            True,
        ),
    ):
        if metric in store.metric_names():
            curves = {c.condition: c for c in results.curves(store, metric)}
            made.append(
                Figure(title, caption, plots.to_png(plots.curves_by_kind(analysis, curves, metric, True, zero)))
            )
    return made


def animations(store: Store, analysis: StudyAnalysis, max_steps: int = 300) -> list[Figure]:
    """GIFs of the best run of the baseline and of each regularizer kind's best condition
    (by final training score), playing the same evaluation episode greedily."""
    metric = "score" if "score" in analysis.summaries else next(iter(analysis.summaries), None)
    if metric is None:
        return []
    summaries = analysis.summaries[metric]
    chosen = [summaries[0]]
    for kind in dict.fromkeys(s.kind for s in summaries[1:]):
        of_kind = [s for s in summaries if s.kind == kind and np.isfinite(s.final.value)]
        if of_kind:
            chosen.append(max(of_kind, key=lambda s: s.final.value))
    made = []
    if not hasattr(tasks.REGISTRY.get(json.loads(analysis.meta["spec_json"])["task"]), "episode"):
        return []  # not a game: nothing to watch
    for summary in chosen:
        seed = results.best_seed(store, summary.condition, metric)
        try:
            env, states = results.episode(store, summary.condition, seed, 0, max_steps)
        except ConfigError:  # not trained yet (a partial study)
            continue
        buffer = io.BytesIO()
        render.save_gif(env, states, buffer, cell_pixels=12)
        score = int(states[-1].length) - env.initial_length
        made.append(
            Figure(
                f"{summary.condition} (seed {seed})",
                f"greedy policy, {len(states)} steps, score {score}",
                buffer.getvalue(),
            )
        )
    return made


def _setup_lines(analysis: StudyAnalysis, store: Store) -> list[str]:
    versions = json.loads(analysis.meta.get("versions", "{}"))
    wall = sum(batch.wall_seconds for batch in store.batches())
    return [
        f"Study `{analysis.name}`: {len(analysis.conditions)} conditions x {analysis.seeds} seeds, "
        f"budget {analysis.budget_steps:,} {analysis.step_unit} per run.",
        f"Trained for {wall / 60:.1f} minutes of wall time on {versions.get('device', '?')} "
        f"({versions.get('cpu_count', '?')} CPUs, {versions.get('platform', '?')}).",
        "Software: "
        + ", ".join(f"{k} {v}" for k, v in versions.items() if k not in ("platform", "device", "cpu_count")),
        "Thresholds: "
        + "; ".join(f"{m}: {', '.join(f'{t:g}' for t in ts)}" for m, ts in analysis.thresholds.items())
        + ' ("auto" = 25/50/75% of the best condition\'s final IQM).',
    ]


def _caveats(analysis: StudyAnalysis) -> list[str]:
    notes = [
        "Runs that never reached a threshold are right-censored at the budget (or at their last recorded step), "
        "not dropped; a median marked 'not reached' means fewer than half of the runs got there.",
        "Learning speed depends on the threshold: a regularizer can reach a low threshold sooner and a high one "
        "later. All thresholds are in the full comparison table; the verdict uses the middle one.",
        "Results hold for this budget, these strengths and this configuration; a longer budget can change "
        "final performance without changing early speed.",
    ]
    if analysis.power is not None:
        power = analysis.power
        needed = power.seeds_for.get(1.2, -1)
        notes.append(
            f"Power: with {power.seeds} seeds per condition, at the level Holm's correction demands of the "
            f"strongest comparison (alpha = {power.alpha:.2g}), a speed-up of "
            f"{_number(power.detectable_speedup)}x would be found with 80% probability; detecting 1.2x needs "
            + (f"{needed} seeds per condition." if needed > 0 else "more than 300 seeds per condition.")
            + " (Simulated by resampling the baseline's own times.)"
        )
    if analysis.incomplete:
        notes.append(f"Incomplete conditions (runs still pending or running): {', '.join(analysis.incomplete)}.")
    for condition, seed, error in analysis.failed_runs:
        notes.append(f"Run {condition} seed {seed} failed: {error}. Its curves stop there.")
    return notes


def _comparison_rows(analysis: StudyAnalysis) -> list[list[str]]:
    return [
        [
            c.condition,
            c.metric,
            f"{c.threshold:g}",
            c.verdict,
            _ratio(c),
            _number(c.p_value, 2),
            _number(c.p_holm, 2),
            f"{c.reached}/{c.runs}",
            _steps(c.median_steps),
        ]
        for c in analysis.comparisons
    ]


COMPARISON_HEADER = [
    "condition",
    "metric",
    "threshold",
    "verdict",
    "speed-up [95% CI]",
    "p",
    "p (Holm)",
    "reached",
    "median",
]


def _markdown(analysis: StudyAnalysis, store: Store, folder: Path) -> str:
    lines = [f"# {QUESTION}", "", f"## Answer ({analysis.name})", "", headline(analysis), ""]
    lines += [f"- {sentence(c, analysis)}" for c in analysis.primary.values()]
    lines += [f"- {opposition_sentence(o)}" for o in analysis.opposition]
    lines += [
        "",
        f"## Verdicts: {verdict_title(analysis)}",
        "",
        "| " + " | ".join(VERDICT_HEADER) + " |",
        "|" + "---|" * len(VERDICT_HEADER),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in verdict_rows(analysis)]
    header, rows = per_metric(analysis)
    if len(header) > 2:
        lines += ["", "## Each metric side by side", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "## Setup", ""] + [f"- {line}" for line in _setup_lines(analysis, store)]
    lines += [
        "",
        "## All comparisons",
        "",
        "| " + " | ".join(COMPARISON_HEADER) + " |",
        "|" + "---|" * len(COMPARISON_HEADER),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in _comparison_rows(analysis)]
    lines += ["", "## Caveats", ""] + [f"- {note}" for note in _caveats(analysis)]
    lines += [
        "",
        "## Reproduce",
        "",
        "Save the spec below as `spec.toml`, then run `regspeed study spec.toml`.",
        "",
        "```toml",
        analysis.meta.get("spec_toml", "").strip(),
        "```",
        "",
    ]
    return "\n".join(lines)


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.faster { color: #1a7f37; font-weight: 600; } .slower { color: #c62828; font-weight: 600; }
figure { margin: 2em 0; } figure img { max-width: 100%; } figcaption { color: #555; font-size: 0.9em; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
"""


def _html(analysis: StudyAnalysis, store: Store, figures_made: list[Figure], gifs: list[Figure]) -> str:
    escape = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>regspeed report: {escape(analysis.name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(QUESTION)}</h1>",
        f"<h2>Answer</h2><p>{escape(headline(analysis))}</p><ul>",
    ]
    parts += [f"<li>{escape(sentence(c, analysis))}</li>" for c in analysis.primary.values()]
    parts += [f"<li>{escape(opposition_sentence(o))}</li>" for o in analysis.opposition]
    parts.append("</ul><h2>Setup</h2><ul>")
    parts += [f"<li>{escape(line)}</li>" for line in _setup_lines(analysis, store)]
    parts.append(f"</ul><h2>Verdicts</h2><p>{escape(verdict_title(analysis))}</p>")
    parts += _html_table(VERDICT_HEADER, verdict_rows(analysis), 1)
    header, rows = per_metric(analysis)
    if len(header) > 2:
        parts.append(
            "<h2>Each metric side by side</h2><p>Time to each metric's middle threshold against the "
            "baseline (for supervised tasks: fitting on the left, generalization on the right).</p>"
        )
        parts += _html_table(header, rows, -1)
    parts.append("<h2>All comparisons</h2>")
    parts += _html_table(COMPARISON_HEADER, _comparison_rows(analysis), 3)
    parts.append("<h2>Evidence</h2>")
    for figure in figures_made:
        data = base64.b64encode(figure.png).decode("ascii")
        parts.append(
            f"<figure><h3>{escape(figure.title)}</h3><img alt='{escape(figure.title)}' "
            f"src='data:image/png;base64,{data}'><figcaption>{escape(figure.caption)}</figcaption></figure>"
        )
    if gifs:
        parts.append(
            "<h2>Watching the snake</h2><p>The best run of the baseline and of each kind's best "
            "condition, on the same board.</p><div style='display:flex;flex-wrap:wrap;gap:1.5em'>"
        )
        for gif in gifs:
            data = base64.b64encode(gif.png).decode("ascii")
            parts.append(
                f"<figure><img alt='{escape(gif.title)}' src='data:image/gif;base64,{data}'>"
                f"<figcaption>{escape(gif.title)}: {escape(gif.caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append("<h2>Caveats</h2><ul>")
    parts += [f"<li>{escape(note)}</li>" for note in _caveats(analysis)]
    parts.append(
        "</ul><h2>Reproduce</h2><p>Save this spec as <code>spec.toml</code> and run "
        "<code>regspeed study spec.toml</code>:</p>"
    )
    parts.append(f"<pre>{escape(analysis.meta.get('spec_toml', '').strip())}</pre></body></html>")
    return "\n".join(parts)


def write(folder: Path) -> Report:
    """Analyse the study in ``folder`` and write ``report.html`` and ``summary.md`` there."""
    store = Store.open(folder)
    try:
        analysis = compare.analyze(store)
        made = figures(store, analysis)
        gifs = animations(store, analysis)
        markdown = _markdown(analysis, store, folder)
        page = _html(analysis, store, made, gifs)
    finally:
        store.close()
    html_path, markdown_path = folder / "report.html", folder / "summary.md"
    for path, text in ((html_path, page), (markdown_path, markdown)):
        partial = path.with_name(path.name + ".partial")
        partial.write_text(text)
        partial.replace(path)
    return Report(html_path, markdown_path, verdict_table(analysis), analysis)
