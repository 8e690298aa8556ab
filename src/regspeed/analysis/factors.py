"""A study with factors as data: every cell's answer side by side (the answer map).

A study with factors is a grid of cells (combinations of the factors' values); each cell is a
study of its own, with its own baseline, and :func:`~regspeed.analysis.compare.analyze`
answers it, its primary comparisons Holm-corrected over its own conditions. :func:`analyze`
puts the cells' analyses side by side and adds one map-wide correction: Holm's over every
primary comparison of every cell at once (both the difference and the equivalence test), so
that a claim read across the whole map ("faster somewhere") has a family-wise error rate too.
Arrays in, dataclasses out, no I/O.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any

from regspeed.analysis import compare, stats
from regspeed.analysis.compare import Comparison, StudyAnalysis
from regspeed.study.results import Condition, StudyData
from regspeed.study.spec import Factor, cell_label

DECISIVE = ("faster", "slower", "equivalent")


@dataclasses.dataclass(frozen=True)
class CellAnalysis:
    """One cell of the map: its index, label (``board=6, algorithm=ppo``), factor values
    (empty where the label names no combination of the factors) and its own analysis."""

    index: int
    label: str
    values: dict[str, Any]
    analysis: StudyAnalysis


@dataclasses.dataclass(frozen=True)
class MapComparison:
    """A primary comparison of one cell (corrected within its cell: ``comparison.verdict``)
    with the map-wide correction: Holm's over every primary comparison of the map."""

    cell: int  # the cell's index
    comparison: Comparison
    p_map: float  # difference test, Holm-corrected over the whole map
    p_equivalence_map: float  # equivalence test, likewise
    map_verdict: str  # the verdict from the map-wide p-values

    @property
    def holds_across_map(self) -> bool:
        """A decisive verdict of its cell that is still the verdict after the map-wide correction."""
        return self.comparison.verdict in DECISIVE and self.map_verdict == self.comparison.verdict


@dataclasses.dataclass(frozen=True)
class MapAnalysis:
    """Every cell's answer, and the map-wide correction."""

    name: str
    factors: list[Factor]  # spec order; those with one value included
    cells: list[CellAnalysis]  # cell order (the first factor varies slowest)
    conditions: list[Condition]  # the regularized conditions, in study order (of the first cell that has each)
    comparisons: list[MapComparison]  # every cell's primary comparisons, cell by cell, in condition order

    def comparison(self, cell: int, condition: str) -> MapComparison | None:
        """The primary comparison of ``condition`` in cell ``cell`` (None if it has none)."""
        return self._index.get((cell, condition))

    @functools.cached_property
    def _index(self) -> dict[tuple[int, str], MapComparison]:
        return {(found.cell, found.comparison.condition): found for found in self.comparisons}

    @property
    def varying(self) -> list[Factor]:
        """The factors with more than one value."""
        return [factor for factor in self.factors if len(factor.values) > 1]

    @property
    def margin(self) -> float:
        """The equivalence margin (the spec's, the same in every cell)."""
        return self.cells[0].analysis.margin


def analyze(cells: list[StudyData], factors: list[Factor]) -> MapAnalysis:
    """The answer map of a study's cells (their data in cell order, as ``results.load`` reads
    each) and its factors: each cell analysed as a study of its own, then the map-wide Holm
    correction over all their primary comparisons."""
    return side_by_side([compare.analyze(data) for data in cells], [data.cell for data in cells], factors)


def side_by_side(analyses: list[StudyAnalysis], labels: list[str], factors: list[Factor]) -> MapAnalysis:
    """:func:`analyze` from the cells' analyses already made (``labels``: each cell's label)."""
    combinations = [dict(zip([f.name for f in factors], values, strict=True))
                    for values in itertools.product(*[f.values for f in factors])]  # fmt: skip
    values_of = {cell_label(values): values for values in combinations}
    cells = [
        CellAnalysis(index, label, values_of.get(label, {}), analysis)
        for index, (label, analysis) in enumerate(zip(labels, analyses, strict=True))
    ]
    conditions: dict[str, Condition] = {}
    for cell in cells:
        for condition in cell.analysis.conditions[1:]:
            conditions.setdefault(condition.name, condition)
    primary = [
        (cell.index, cell.analysis.primary[name])
        for cell in cells
        for name in conditions
        if name in cell.analysis.primary
    ]
    differences = stats.holm([c.p_value for _, c in primary]) if primary else []
    equivalences = stats.holm([c.p_equivalence for _, c in primary]) if primary else []
    comparisons = [
        MapComparison(index, c, float(p), float(q), stats.verdict(float(p), c.faster_direction, float(q)))
        for (index, c), p, q in zip(primary, differences, equivalences, strict=True)
    ]
    name = analyses[0].name if analyses else "study"
    return MapAnalysis(name, list(factors), cells, list(conditions.values()), comparisons)
