"""The report's figures (matplotlib, files only).

Every figure shows the baseline next to each regularizer kind: curves are IQMs over runs
with 95% bootstrap bands; strengths of one kind share a colour map (light = weak, dark =
strong).
"""

from __future__ import annotations

import io
import warnings

import matplotlib
import matplotlib.lines
import matplotlib.patches

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from scipy import stats as scipy_stats

from regspeed.analysis import metrics, stats
from regspeed.analysis.compare import StudyAnalysis
from regspeed.safe_text import printable
from regspeed.study.results import ConditionCurves

BASELINE_COLOUR = "0.25"
COLOUR_MAPS = {"l1": "Blues", "l2": "Oranges", "weight_decay": "Greens", "l2_init": "Purples", "elastic": "Reds"}
BAND_RESAMPLES = 500


def to_png(figure: Figure) -> bytes:
    """The figure as PNG bytes (and closed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def iqm_band(values: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per point: IQM over runs and its 95% percentile-bootstrap band (runs resampled)."""
    runs = values.shape[0]
    centre = scipy_stats.trim_mean(values, 0.25, axis=0)
    if runs < 2:
        return centre, centre, centre
    index = np.random.default_rng(seed).integers(0, runs, (BAND_RESAMPLES, runs))
    draws = scipy_stats.trim_mean(values[index], 0.25, axis=1)
    with warnings.catch_warnings():  # points where no run has a value yet (a partial study) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(draws, [0.025, 0.975], axis=0)
    return centre, low, high


def _kinds(analysis: StudyAnalysis) -> list[str]:
    return list(dict.fromkeys(c.kind for c in analysis.conditions[1:]))


def _colours(analysis: StudyAnalysis, kind: str) -> dict[str, tuple]:
    names = [c.name for c in analysis.conditions if c.kind == kind]
    colour_map = plt.get_cmap(COLOUR_MAPS.get(kind, "viridis"))
    return {name: colour_map(0.45 + 0.5 * i / max(1, len(names) - 1)) for i, name in enumerate(names)}


def _panels(count: int, height: float = 3.2) -> tuple[Figure, list]:
    figure, axes = plt.subplots(1, max(1, count), figsize=(4.6 * max(1, count), height), squeeze=False, sharey=True)
    return figure, list(axes[0])


def _curve(axis: plt.Axes, curve: ConditionCurves, colour: object, label: str, smooth: bool) -> None:
    values = metrics.smooth(curve.values, metrics.smoothing_window(len(curve.steps))) if smooth else curve.values
    centre, low, high = iqm_band(values)
    axis.plot(curve.steps, centre, color=colour, label=printable(label), linewidth=1.6)
    axis.fill_between(curve.steps, low, high, color=colour, alpha=0.18, linewidth=0)


def curves_by_kind(
    analysis: StudyAnalysis,
    curves: dict[str, ConditionCurves],
    ylabel: str,
    smooth: bool = True,
    zero_line: bool = False,
) -> Figure:
    """One panel per regularizer kind: its strengths and the baseline, IQM with bands."""
    kinds = _kinds(analysis)
    figure, axes = _panels(len(kinds))
    baseline = analysis.conditions[0].name
    for axis, kind in zip(axes, kinds, strict=False):
        if baseline in curves:
            _curve(axis, curves[baseline], BASELINE_COLOUR, "baseline", smooth)
        for name, colour in _colours(analysis, kind).items():
            if name in curves:
                _curve(axis, curves[name], colour, name, smooth)
        if zero_line:
            axis.axhline(0.0, color="0.6", linewidth=0.8)
        axis.set_title(printable(kind))
        axis.set_xlabel(analysis.step_unit)
        axis.legend(fontsize=7, frameon=False)
        axis.grid(alpha=0.25)
    axes[0].set_ylabel(ylabel)
    figure.tight_layout()
    return figure


def kaplan_meier(analysis: StudyAnalysis) -> Figure | None:
    """Per kind: the share of runs that have not yet reached the primary threshold."""
    if not analysis.primary:
        return None
    first = next(iter(analysis.primary.values()))
    data = next(t for t in analysis.times if t.metric == first.metric and t.threshold == first.threshold)
    kinds = _kinds(analysis)
    figure, axes = _panels(len(kinds))
    baseline = analysis.conditions[0].name
    for axis, kind in zip(axes, kinds, strict=False):
        entries = [(baseline, BASELINE_COLOUR), *_colours(analysis, kind).items()]
        for name, colour in entries:
            times = data.times[name]
            curve = stats.kaplan_meier(times.steps, times.reached)
            steps = np.concatenate([curve.steps, [analysis.budget_steps]])
            levels = np.concatenate([curve.not_reached, curve.not_reached[-1:]])
            label = printable(f"{name} ({times.reached.sum()}/{len(times.steps)})")
            axis.step(steps, levels, where="post", color=colour, label=label)
        axis.set_title(printable(kind))
        axis.set_xlabel(analysis.step_unit)
        axis.set_ylim(-0.03, 1.03)
        axis.legend(fontsize=7, frameon=False)
        axis.grid(alpha=0.25)
    axes[0].set_ylabel(f"runs not yet at {first.metric} {first.threshold:g}")
    figure.tight_layout()
    return figure


def sensitivity(analysis: StudyAnalysis, metric: str) -> Figure:
    """Final performance and primary speed-up against strength (log axis), per kind."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    summaries = {s.condition: s for s in analysis.summaries[metric]}
    base = summaries[analysis.conditions[0].name].final
    left.axhspan(base.low, base.high, color=BASELINE_COLOUR, alpha=0.15, label="baseline 95% CI")
    left.axhline(base.value, color=BASELINE_COLOUR, linewidth=1)
    right.axhline(1.0, color=BASELINE_COLOUR, linewidth=1, label="baseline")
    for kind in _kinds(analysis):
        names = [c for c in analysis.conditions if c.kind == kind]
        colour = plt.get_cmap(COLOUR_MAPS.get(kind, "viridis"))(0.75)
        x = np.asarray([c.strength for c in names])
        finals = [summaries[c.name].final for c in names]
        _errorbars(left, x, finals, colour, kind)
        ratios = [analysis.primary[c.name].speedup for c in names if c.name in analysis.primary]
        if len(ratios) == len(names):
            _errorbars(right, x, ratios, colour, kind)
    left.set_ylabel(f"final {metric} (IQM)")
    first = next(iter(analysis.primary.values()), None)
    right.set_ylabel(f"speed-up to {first.metric} {first.threshold:g}" if first else "speed-up")
    for axis in (left, right):
        axis.set_xscale("log")
        axis.set_xlabel("strength")
        axis.legend(fontsize=7, frameon=False)
        axis.grid(alpha=0.25)
    figure.tight_layout()
    return figure


def _errorbars(axis: plt.Axes, x: np.ndarray, intervals: list, colour: object, label: str) -> None:
    centre = np.asarray([i.value for i in intervals], float)
    low = np.asarray([i.low for i in intervals], float)
    high = np.asarray([i.high for i in intervals], float)
    finite = np.isfinite(centre) & np.isfinite(low) & np.isfinite(high)
    axis.errorbar(
        x[finite],
        centre[finite],
        yerr=[centre[finite] - low[finite], high[finite] - centre[finite]],
        color=colour,
        marker="o",
        capsize=3,
        label=printable(label),
    )


def final_intervals(analysis: StudyAnalysis, metric: str) -> Figure:
    """IQM of final performance with its 95% interval, one row per condition."""
    rows = analysis.summaries[metric]
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    base = rows[0].final
    axis.axvspan(base.low, base.high, color=BASELINE_COLOUR, alpha=0.15)
    for row, summary in enumerate(rows):
        kind = summary.kind
        colour = BASELINE_COLOUR if row == 0 else plt.get_cmap(COLOUR_MAPS.get(kind, "viridis"))(0.75)
        interval = summary.final
        if np.isfinite(interval.low):
            axis.plot([interval.low, interval.high], [row, row], color=colour, linewidth=4, alpha=0.6)
        axis.plot([interval.value], [row], "o", color=colour)
    axis.set_yticks(range(len(rows)), [printable(s.condition) + ("" if s.complete else " (incomplete)") for s in rows])
    axis.invert_yaxis()
    axis.set_xlabel(f"final {metric}: IQM over runs, 95% CI")
    axis.grid(alpha=0.25, axis="x")
    figure.tight_layout()
    return figure


VERDICT_COLOURS = {"faster": "#1a7f37", "slower": "#c62828", "equivalent": "#1f5fa8", "inconclusive": "#777777"}


def speedup_forest(analysis: StudyAnalysis, names: dict[str, str]) -> Figure | None:
    """The answer in one picture: each condition's speed-up to the primary threshold with its
    95% interval (log axis), coloured by its verdict, the equivalence band shaded and 1x
    marked; conditions that never reached it sit at the left edge. ``names``: condition ->
    its label. None without primary comparisons."""
    rows = [analysis.primary[c.name] for c in analysis.conditions[1:] if c.name in analysis.primary]
    if not rows:
        return None
    values = [c.speedup.value for c in rows if c.reached and np.isfinite(c.speedup.value) and c.speedup.value > 0]
    ends = [v for c in rows for v in (c.speedup.low, c.speedup.high) if np.isfinite(v) and v > 0]
    left = min([1 / (analysis.margin * 1.6), *values, *ends]) / 1.15
    right = max([analysis.margin * 1.6, *values, *ends]) * 1.15
    figure, axis = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.1))
    axis.axvspan(1 / analysis.margin, analysis.margin, color=VERDICT_COLOURS["equivalent"], alpha=0.12, lw=0)
    axis.axvline(1.0, color=BASELINE_COLOUR, linewidth=1)
    for row, comparison in enumerate(rows):
        colour = VERDICT_COLOURS.get(comparison.verdict, VERDICT_COLOURS["inconclusive"])
        interval = comparison.speedup
        if comparison.reached == 0:
            axis.plot([left], [row], marker="<", color=colour, clip_on=False)
            axis.text(left * 1.08, row, "never reached", va="center", fontsize=8, color=colour)
            continue
        if comparison.baseline_reached == 0:
            axis.plot([right], [row], marker=">", color=colour, clip_on=False)
            axis.text(right / 1.08, row, "only this reached it", va="center", ha="right", fontsize=8, color=colour)
            continue
        low = interval.low if np.isfinite(interval.low) and interval.low > 0 else left
        high = interval.high if np.isfinite(interval.high) else right
        axis.plot([low, high], [row, row], color=colour, linewidth=3, alpha=0.55, solid_capstyle="butt")
        axis.plot([interval.value], [row], "o", color=colour)
    axis.set_xscale("log")
    axis.set_xlim(left, right)
    ticks = [t for t in (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2, 3, 4, 6, 10) if left < t < right]
    axis.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    axis.minorticks_off()
    axis.set_yticks(range(len(rows)), [printable(names.get(c.condition, c.condition)) for c in rows])
    axis.set_ylim(len(rows) - 0.5, -0.5)
    axis.set_xlabel("speed-up: baseline's time / condition's time (> 1 is faster), 95% interval")
    handles = [
        matplotlib.lines.Line2D([], [], color=colour, marker="o", linewidth=3, alpha=0.8, label=verdict)
        for verdict, colour in VERDICT_COLOURS.items()
        if any(c.verdict == verdict for c in rows)
    ]
    within = f"within {analysis.margin:g}x"
    band = matplotlib.patches.Patch(color=VERDICT_COLOURS["equivalent"], alpha=0.12, label=within)
    axis.legend(handles=[*handles, band], fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    axis.grid(alpha=0.25, axis="x")
    figure.tight_layout()
    return figure
