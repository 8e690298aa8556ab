"""The report's figures (matplotlib, files only).

Every figure shows the baseline next to each regularizer kind: curves are IQMs over runs
with 95% bootstrap bands; strengths of one kind share a colour map (light = weak, dark =
strong).
"""

from __future__ import annotations

import io
import itertools
import warnings
from typing import TYPE_CHECKING, Any

import matplotlib
import matplotlib.lines
import matplotlib.patches
import matplotlib.ticker

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from scipy import stats as scipy_stats

from regspeed.analysis import phases, stats
from regspeed.analysis.compare import Comparison, StudyAnalysis
from regspeed.analysis.factors import DECISIVE, MapAnalysis, MapComparison
from regspeed.report import text
from regspeed.safe_text import printable
from regspeed.study.results import ConditionCurves, TuningChoice
from regspeed.study.spec import Factor, cell_label, value_text

if TYPE_CHECKING:
    from regspeed.report.model import MapGrid, MapTile

BASELINE_COLOUR = "0.25"
COLOUR_MAPS = {
    "l1": "Blues", "l2": "Oranges", "weight_decay": "Greens", "l2_init": "Purples", "elastic": "Reds",
    "shrink_perturb": "YlOrBr",
}  # fmt: skip
BAND_RESAMPLES = 500


def _plain(label: str) -> str:
    """Text from a study as a figure shows it: printable, ``$`` not starting mathtext."""
    return printable(label).replace("$", r"\$")


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
    if np.isnan(values).any():  # scipy's NaN-propagating path (a partial study)
        draws = scipy_stats.trim_mean(values[index], 0.25, axis=1)
    else:
        draws = _trimmed_means(values, index)
    if not np.isnan(draws).any():  # the same numbers as nanquantile's, without its loop over the points
        low, high = np.quantile(draws, [0.025, 0.975], axis=0)
        return centre, low, high
    with warnings.catch_warnings():  # points where no run has a value yet (a partial study) stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(draws, [0.025, 0.975], axis=0)
    return centre, low, high


def _trimmed_means(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``scipy.stats.trim_mean(values[index], 0.25, axis=1)`` for finite ``values``, 5-10x
    faster: the resampled runs of a point lie contiguous and are sorted (scipy partitions them
    at two ranks, which costs more than sorting a row of runs), then the middle half is
    averaged. Equal to scipy's within rounding (the middle half is added in another order)."""
    runs = values.shape[0]
    low = int(0.25 * runs)
    drawn = np.ascontiguousarray(values.T)[:, index]  # points x resamples x runs
    drawn.sort(axis=-1)
    return drawn[..., low : runs - low].mean(axis=-1).T


def _kinds(analysis: StudyAnalysis) -> list[str]:
    return list(dict.fromkeys(c.kind for c in analysis.conditions[1:]))


def _colours(analysis: StudyAnalysis, kind: str) -> dict[str, tuple]:
    names = [c.name for c in analysis.conditions if c.kind == kind]
    colour_map = plt.get_cmap(COLOUR_MAPS.get(kind, "viridis"))
    return {name: colour_map(0.45 + 0.5 * i / max(1, len(names) - 1)) for i, name in enumerate(names)}


def condition_colours(analysis: StudyAnalysis) -> dict[str, tuple]:
    """Condition name -> its colour in every figure (the baseline: none; see BASELINE_COLOUR)."""
    return {name: colour for kind in _kinds(analysis) for name, colour in _colours(analysis, kind).items()}


def _panels(count: int, height: float = 3.2) -> tuple[Figure, list]:
    figure, axes = plt.subplots(1, max(1, count), figsize=(4.6 * max(1, count), height), squeeze=False, sharey=True)
    return figure, list(axes[0])


def _curve(
    axis: plt.Axes,
    curve: ConditionCurves,
    colour: object,
    label: str,
    smooth: bool,
    bands: dict | None = None,
    phase_steps: int = 0,
    budget: float = 0.0,
) -> None:
    """A condition's IQM curve with its band (kept in ``bands`` by condition: the baseline is
    drawn in every panel, its band computed once); smoothed as the analysis reads it (in a
    changing world, restarted at each phase's start)."""
    band = None if bands is None else bands.get(curve.condition)
    if band is None:
        values = phases.smoothed(curve.steps, curve.values, phase_steps, budget) if smooth else curve.values
        band = iqm_band(values)
        if bands is not None:
            bands[curve.condition] = band
    centre, low, high = band
    axis.plot(curve.steps, centre, color=colour, label=_plain(label), linewidth=1.6)
    axis.fill_between(curve.steps, low, high, color=colour, alpha=0.18, linewidth=0)


def curves_by_kind(
    analysis: StudyAnalysis,
    curves: dict[str, ConditionCurves],
    ylabel: str,
    smooth: bool = True,
    zero_line: bool = False,
    phase_steps: int = 0,
) -> Figure:
    """One panel per regularizer kind: its strengths and the baseline, IQM with bands; in a
    changing world (``phase_steps`` > 0) the phase boundaries as dotted vertical lines."""
    kinds = _kinds(analysis)
    figure, axes = _panels(len(kinds))
    baseline = analysis.conditions[0].name
    budget = analysis.budget_steps
    bands: dict = {}
    for axis, kind in zip(axes, kinds, strict=False):
        if baseline in curves:
            _curve(axis, curves[baseline], BASELINE_COLOUR, "baseline", smooth, bands, phase_steps, budget)
        for name, colour in _colours(analysis, kind).items():
            if name in curves:
                _curve(axis, curves[name], colour, name, smooth, None, phase_steps, budget)
        if zero_line:
            axis.axhline(0.0, color="0.6", linewidth=0.8)
        if phase_steps > 0:
            for boundary in phases.phase_edges(budget, phase_steps)[1:-1]:
                axis.axvline(boundary, color="0.55", linewidth=0.8, linestyle=":")
        axis.set_title(_plain(kind))
        axis.set_xlabel(analysis.step_unit)
        axis.legend(fontsize=7, frameon=False)
        axis.grid(alpha=0.25)
    axes[0].set_ylabel(ylabel)
    figure.tight_layout()
    return figure


def phase_curves(analysis: StudyAnalysis, names: dict[str, str]) -> Figure | None:
    """A changing world, phase by phase: each condition's time to the threshold from the
    phase's start (left; a phase never reached counts as its length, the dotted line) and
    area under the phase's curve (right), IQM over runs with 95% intervals, against the phase
    index; one line per condition, coloured as in every figure. None in a stationary world."""
    found = analysis.phases
    if found is None:
        return None
    colours = {analysis.conditions[0].name: BASELINE_COLOUR, **condition_colours(analysis)}
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    index = np.arange(found.count)
    for row in found.conditions:
        colour = colours.get(row.condition, BASELINE_COLOUR)
        label = _plain(names.get(row.condition, row.condition))
        for axis, intervals in ((left, row.times), (right, row.areas)):
            centre, low, high = (np.asarray([getattr(i, part) for i in intervals], float)
                                 for part in ("value", "low", "high"))  # fmt: skip
            axis.plot(index, centre, color=colour, marker="o", markersize=3, linewidth=1.4, label=label)
            axis.fill_between(index, low, high, color=colour, alpha=0.15, linewidth=0)
    left.plot(index, np.diff(found.edges), color="0.55", linestyle=":", linewidth=1, label="phase length")
    target = f"{found.fraction:.0%} of the phase's best" if found.per_phase else f"{found.metric} {found.threshold:g}"
    left.set_ylabel(_plain(f"{analysis.step_unit} to {target} from the phase's start"))
    right.set_ylabel(_plain(f"{found.metric}: area under the phase's curve"))
    for axis in (left, right):
        axis.set_xlabel("phase (0: first learning; the world changes at each next one)")
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.grid(alpha=0.25)
    left.set_ylim(bottom=0)
    left.legend(fontsize=7, frameon=False)
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
            label = _plain(f"{name} ({times.reached.sum()}/{len(times.steps)})")
            axis.step(steps, levels, where="post", color=colour, label=label)
        axis.set_title(_plain(kind))
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


def tuning_curves(tuning: TuningChoice, names: dict[str, str], colours: dict[str, object], label: str) -> Figure:
    """A cell's tuning: each condition's mean score (line) and per-seed scores (dots) at each
    candidate, the candidate it kept ringed. One numeric knob: its values on the x axis (a
    log axis when they are positive and span 3x or more); else the candidates in order."""
    figure, axis = plt.subplots(figsize=(7, 3.4))
    values = [next(iter(c.values())) for c in tuning.candidates]
    numeric = len(tuning.candidates[0]) == 1 and all(isinstance(v, int | float) and not isinstance(v, bool)
                                                      for v in values)  # fmt: skip
    x = np.asarray(values, float) if numeric else np.arange(len(values), dtype=float)
    for tuned in tuning.cells[0].conditions:
        colour = colours.get(tuned.condition, BASELINE_COLOUR)
        means = np.asarray([np.mean([s for s in seeds if s is not None]) if any(s is not None for s in seeds)
                            else np.nan for seeds in tuned.scores])  # fmt: skip
        axis.plot(x, means, color=colour, marker="o", label=_plain(names.get(tuned.condition, tuned.condition)))
        for position, seeds in zip(x, tuned.scores, strict=True):
            found = [s for s in seeds if s is not None]
            axis.scatter([position] * len(found), found, color=colour, s=8, alpha=0.5)
        axis.scatter([x[tuned.chosen]], [means[tuned.chosen]], s=160, facecolors="none", edgecolors=colour)
    first = next(iter(tuning.candidates[0]))
    if numeric:
        if all(_positive(v) for v in values) and max(values) / min(values) >= 3:
            axis.set_xscale("log")
        axis.set_xlabel(_plain(first))
    else:
        axis.set_xticks(x, [_plain(text.candidate_label(c)) for c in tuning.candidates], rotation=20, fontsize=7)
    by = "area under the curve" if tuning.criterion == "auc" else "final value"
    axis.set_ylabel(_plain(f"{label}: {by}"))
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
        label=_plain(label),
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
    axis.set_yticks(range(len(rows)), [_plain(s.condition) + ("" if s.complete else " (incomplete)") for s in rows])
    axis.invert_yaxis()
    axis.set_xlabel(f"final {metric}: IQM over runs, 95% CI")
    axis.grid(alpha=0.25, axis="x")
    figure.tight_layout()
    return figure


VERDICT_COLOURS = {"faster": "#1a7f37", "slower": "#c62828", "equivalent": "#1f5fa8", "inconclusive": "#777777"}


def _speedup_limits(comparisons: list[Comparison], margin: float) -> tuple[float, float]:
    """A log axis of speed-ups that holds every estimate and interval end and the equivalence band."""
    values = [c.speedup.value for c in comparisons if c.reached and _positive(c.speedup.value)]
    ends = [v for c in comparisons for v in (c.speedup.low, c.speedup.high) if _positive(v)]
    return min([1 / (margin * 1.6), *values, *ends]) / 1.15, max([margin * 1.6, *values, *ends]) * 1.15


def _positive(value: float) -> bool:
    """A finite value above 0 (one a log axis can show)."""
    return bool(np.isfinite(value) and value > 0)


def _speedup_ticks(low: float, high: float) -> list[float]:
    """Round speed-ups between ``low`` and ``high``, for a log axis."""
    return [t for t in (0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2, 3, 4, 6, 10) if low < t < high]


def speedup_forest(analysis: StudyAnalysis, names: dict[str, str]) -> Figure | None:
    """The answer in one picture: each condition's speed-up to the primary threshold with its
    95% interval (log axis), coloured by its verdict, the equivalence band shaded and 1x
    marked; conditions that never reached it sit at the left edge. ``names``: condition ->
    its label. None without primary comparisons."""
    rows = [analysis.primary[c.name] for c in analysis.conditions[1:] if c.name in analysis.primary]
    if not rows:
        return None
    left, right = _speedup_limits(rows, analysis.margin)
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
    ticks = _speedup_ticks(left, right)
    axis.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    axis.minorticks_off()
    axis.set_yticks(range(len(rows)), [_plain(names.get(c.condition, c.condition)) for c in rows])
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


# ---------------------------------------------------------------------------- the answer map (a study with factors)

UNDECIDED_FILL = "#e6e6e6"  # an inconclusive tile: light, so that the decisive ones stand out
TILE_INCHES = (1.05, 0.62)  # width, height
LINES_PER_PANEL = 8  # more conditions than this: a row of panels per regularizer kind


def verdict_map(grid: MapGrid, margin: float) -> Figure:
    """The answer map in one picture: a tile per cell and condition, coloured by the cell's
    verdict (the forest's colours; inconclusive light grey), with the verdict, the speed-up
    and its 95% interval written in it; a thick border and ``*`` where the verdict holds
    after the map-wide correction."""
    rows, columns = len(grid.rows), len(grid.columns)
    heads = [_plain(label).replace(", ", "\n") for label in grid.columns]
    head_lines = max((head.count("\n") + 1 for head in heads), default=1)
    label_inches = min(3.2, 0.075 * max((len(label) for label in grid.rows), default=4) + 0.3)
    width = label_inches + TILE_INCHES[0] * columns + 0.3
    height = TILE_INCHES[1] * rows + 0.2 * head_lines + 0.9
    figure = plt.figure(figsize=(width, height))
    axis = figure.add_axes(
        (label_inches / width, 0.55 / height, TILE_INCHES[0] * columns / width, TILE_INCHES[1] * rows / height)
    )
    for row, tiles in enumerate(grid.tiles):
        for column, tile in enumerate(tiles):
            _draw_tile(axis, row, column, tile)
    axis.set_xlim(0, columns)
    axis.set_ylim(rows, 0)
    axis.xaxis.tick_top()
    axis.set_xticks(np.arange(columns) + 0.5, heads, fontsize=8)
    axis.set_yticks(np.arange(rows) + 0.5, [_plain(label) for label in grid.rows], fontsize=8)
    axis.tick_params(length=0)
    for spine in axis.spines.values():
        spine.set_visible(False)
    shown = {tile.verdict for tiles in grid.tiles for tile in tiles}
    handles = [
        matplotlib.patches.Patch(
            facecolor=UNDECIDED_FILL if verdict == "inconclusive" else colour,
            label=f"equivalent (within {margin:g}x)" if verdict == "equivalent" else verdict,
        )
        for verdict, colour in VERDICT_COLOURS.items()
        if verdict in shown
    ]
    if any(tile.across_map for tiles in grid.tiles for tile in tiles):
        across = f"{text.MAP_MARK} holds across the map"
        handles.append(matplotlib.patches.Patch(facecolor="white", edgecolor="black", linewidth=2, label=across))
    figure.legend(handles=handles, loc="lower left", ncol=len(handles), fontsize=8, frameon=False,
                  bbox_to_anchor=(label_inches / width, 0.0))  # fmt: skip
    return figure


def _draw_tile(axis: plt.Axes, row: int, column: int, tile: MapTile) -> None:
    """One tile of :func:`verdict_map`."""
    decided = tile.verdict in DECISIVE
    fill = VERDICT_COLOURS[tile.verdict] if decided else UNDECIDED_FILL if tile.verdict else "white"
    edge, width = ("black", 2.5) if tile.across_map else ("white", 1.5)
    inset = 0.04 if tile.across_map else 0.0
    axis.add_patch(
        matplotlib.patches.Rectangle(
            (column + inset, row + inset), 1 - 2 * inset, 1 - 2 * inset, facecolor=fill, edgecolor=edge, linewidth=width
        )
    )
    lines = [tile.marked, tile.speedup, tile.interval] if tile.interval else [tile.marked, *_wrapped(tile.speedup)]
    axis.text(
        column + 0.5, row + 0.5, "\n".join(line for line in lines if line), ha="center", va="center",
        fontsize=7, color="white" if decided else "#222222", linespacing=1.15, parse_math=False,
    )  # fmt: skip


def _wrapped(words: str, width: int = 14) -> list[str]:
    """Words in lines of at most about ``width`` characters."""
    lines: list[str] = []
    for word in words.split():
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def effect_by_factor(answer_map: MapAnalysis, factor: Factor, names: dict[str, str]) -> Figure | None:
    """The primary speed-up (95% interval, log axis) against one factor's values, a line per
    regularized condition (coloured as in the learning curves); one panel per combination of
    the other factors, and per regularizer kind as well when there are many conditions.
    Numeric values on a numeric axis, others as categories. A filled marker is a decisive
    verdict in its cell, an open one inconclusive. None without a speed-up to show."""
    others = [other for other in answer_map.varying if other.name != factor.name]
    combinations = [dict(zip([o.name for o in others], values, strict=True))
                    for values in itertools.product(*[o.values for o in others])]  # fmt: skip
    first = answer_map.cells[0].analysis
    kinds = list(dict.fromkeys(c.kind for c in answer_map.conditions))
    colours = {name: colour for kind in kinds for name, colour in _colours(first, kind).items()}
    groups = (
        [[c for c in answer_map.conditions if c.kind == kind] for kind in kinds]
        if len(answer_map.conditions) > LINES_PER_PANEL
        else [list(answer_map.conditions)]
    )
    shown = [f for f in answer_map.comparisons if f.comparison.reached and _positive(f.comparison.speedup.value)]
    if not shown or not answer_map.conditions:
        return None
    low, high = _speedup_limits([f.comparison for f in shown], answer_map.margin)
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in factor.values)
    positions = [float(v) for v in factor.values] if numeric else list(range(len(factor.values)))
    spacing = min(np.diff(sorted(positions)), default=1.0) or 1.0
    per_row = min(4, len(combinations))
    rows_per_group = -(-len(combinations) // per_row)
    figure, axes = plt.subplots(
        len(groups) * rows_per_group, per_row, figsize=(3.8 * per_row, 2.9 * len(groups) * rows_per_group),
        squeeze=False, sharey=True,
    )  # fmt: skip
    for axis in axes.flat:
        axis.set_visible(False)
    drawn = 0
    for group_index, group in enumerate(groups):
        for index, combination in enumerate(combinations):
            axis = axes[group_index * rows_per_group + index // per_row, index % per_row]
            axis.set_visible(True)
            for offset, condition in enumerate(group):
                dodge = (offset - (len(group) - 1) / 2) * 0.3 * spacing / max(1, len(group))
                points = [
                    (position + dodge, found)
                    for position, value in zip(positions, factor.values, strict=True)
                    if (found := _found_at(answer_map, combination | {factor.name: value}, condition.name)) is not None
                ]
                drawn += _speedup_line(axis, points, colours.get(condition.name, BASELINE_COLOUR), names, low, high)
            _factor_axes(axis, factor, positions, (low, high), answer_map.margin)
            axis.set_title(_plain(cell_label(combination)) if combination else "every cell", fontsize=9)
            if index % per_row == 0:
                axis.set_ylabel("speed-up (> 1 is faster)")
            if index == 0 and axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(0, -0.3), ncol=2)
    if not drawn:  # no cell's values are known (labels that name no combination of the factors)
        plt.close(figure)
        return None
    figure.tight_layout()
    return figure


def _factor_axes(
    axis: plt.Axes, factor: Factor, positions: list[float], limits: tuple[float, float], margin: float
) -> None:
    """A panel of :func:`effect_by_factor`: the factor's values across, speed-ups up (log), the
    equivalence band shaded and 1x marked."""
    spacing = min(np.diff(sorted(positions)), default=1.0) or 1.0
    axis.axhspan(1 / margin, margin, color=VERDICT_COLOURS["equivalent"], alpha=0.12, lw=0)
    axis.axhline(1.0, color=BASELINE_COLOUR, linewidth=1)
    axis.set_yscale("log")
    axis.set_ylim(*limits)
    ticks = _speedup_ticks(*limits)
    axis.set_yticks(ticks, [f"{t:g}x" for t in ticks])
    axis.minorticks_off()
    axis.set_xticks(positions, [_plain(value_text(v)) for v in factor.values])
    axis.set_xlim(min(positions) - 0.5 * spacing, max(positions) + 0.5 * spacing)
    axis.set_xlabel(_plain(factor.name))
    axis.grid(alpha=0.25)


def _found_at(answer_map: MapAnalysis, values: dict[str, Any], condition: str) -> MapComparison | None:
    """The primary comparison of ``condition`` in the cell with these factor values."""
    cell = next((c for c in answer_map.cells if all(c.values.get(k) == v for k, v in values.items())), None)
    return None if cell is None else answer_map.comparison(cell.index, condition)


def _speedup_line(
    axis: plt.Axes, points: list[tuple[float, MapComparison]], colour: object, names: dict[str, str], low: float,
    high: float,
) -> int:  # fmt: skip
    """One condition's speed-ups against a factor: a line through the estimates, each with its
    interval (cut at the axis), filled where its cell's verdict is decisive; how many points."""
    kept = [(x, f.comparison) for x, f in points if f.comparison.reached and _positive(f.comparison.speedup.value)]
    if not kept:
        return 0
    name = kept[0][1].condition
    xs = [x for x, _ in kept]
    axis.plot(xs, [c.speedup.value for _, c in kept], color=colour, linewidth=1.2, label=_plain(names.get(name, name)))
    for x, comparison in kept:
        interval = comparison.speedup
        bottom = interval.low if _positive(interval.low) else low
        top = interval.high if _positive(interval.high) else high
        axis.plot([x, x], [bottom, top], color=colour, linewidth=2.5, alpha=0.5, solid_capstyle="butt")
        face = colour if comparison.verdict in DECISIVE else "white"
        axis.plot([x], [interval.value], "o", color=colour, markerfacecolor=face, markersize=5)
    return len(kept)
