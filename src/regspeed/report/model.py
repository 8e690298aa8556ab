"""The report as data, built once from a study's data and analysis; the renderers
(:mod:`~regspeed.report.html`, :mod:`~regspeed.report.markdown`,
:mod:`~regspeed.report.terminal`) only read it."""

from __future__ import annotations

import dataclasses

from regspeed.analysis.compare import StudyAnalysis
from regspeed.analysis.factors import CellAnalysis, MapAnalysis
from regspeed.report import text
from regspeed.study.results import StudyData
from regspeed.study.spec import value_text


@dataclasses.dataclass(frozen=True)
class TextTable:
    """A table of text cells."""

    header: list[str]
    rows: list[list[str]]
    verdict_column: int | None  # the column whose cells are verdicts (coloured by them), if any


@dataclasses.dataclass(frozen=True)
class Figure:
    """A titled PNG with a caption; ``section`` says where the report shows it."""

    title: str
    caption: str
    png: bytes
    section: str = "evidence"  # "summary" (the answer's picture), "curves" (learning curves), "tuning", "relearning"
    # (a changing world's phases), "evidence" or (a study with factors) "factors" (the speed-up against a factor)


@dataclasses.dataclass(frozen=True)
class Animation:
    """A titled GIF (a trained run playing) with a caption."""

    title: str
    caption: str
    gif: bytes


@dataclasses.dataclass(frozen=True)
class ReportModel:
    """Everything a report says, in the order it says it."""

    question: str
    study: str  # the study's name
    answer: str  # the answer in a few plain sentences
    findings: list[str]  # how it was decided, then each comparison and diagnostic, one sentence each
    setup: list[str]
    verdict_title: str
    verdicts: TextTable  # one row per condition: its primary comparison
    per_metric: TextTable | None  # every metric with thresholds side by side; None with fewer than two
    comparisons: TextTable  # every comparison of the study
    figures: list[Figure]  # in report order; see Figure.section
    animations: list[Animation]
    caveats: list[str]
    spec_toml: str  # what reproduces the study
    generalization: TextTable | None = None  # a world with levels: training vs held-out levels at the end
    generalization_note: str | None = None  # what that table says, in a sentence
    relearning: TextTable | None = None  # a changing world: first learning, relearning and the trend per condition
    relearning_note: str | None = None  # what that table says, in a few words
    tuning: TextTable | None = None  # a tuned study: each condition's tuning scores and the setting it kept
    tuning_note: str | None = None  # how the settings were chosen and what each condition kept


def build(
    data: StudyData,
    analysis: StudyAnalysis,
    figures: list[Figure],
    animations: list[Animation],
    gifs_left_out: tuple[str, ...] = (),
) -> ReportModel:
    """The report of a study from its data, its analysis and its rendered evidence (and the
    runs whose GIF was left out, their checkpoint missing or unreadable)."""
    header, rows = text.per_metric(analysis)
    return ReportModel(
        question=text.QUESTION,
        study=analysis.name,
        answer=text.answer(analysis),
        findings=[text.verdict_summary(analysis), *text.findings(analysis)],
        setup=text.setup_lines(data, analysis),
        verdict_title=text.verdict_title(analysis),
        verdicts=TextTable(text.VERDICT_HEADER, text.verdict_rows(analysis), verdict_column=1),
        per_metric=TextTable(header, rows, verdict_column=None) if len(header) > 2 else None,
        comparisons=TextTable(text.COMPARISON_HEADER, text.comparison_rows(analysis), verdict_column=3),
        generalization=TextTable(text.GENERALIZATION_HEADER, text.generalization_rows(analysis), verdict_column=None)
        if analysis.generalization
        else None,
        generalization_note=text.generalization_sentence(analysis),
        relearning=TextTable(text.RELEARNING_HEADER, text.relearning_rows(analysis), text.RELEARNING_VERDICT_COLUMN)
        if analysis.phases is not None
        else None,
        relearning_note=text.relearning_sentence(analysis),
        tuning=_tuning_table(data, analysis),
        tuning_note=None if data.tuning is None
        else text.tuning_sentence(data.tuning, text.display_names(analysis), data.label(data.tuning.metric)),
        figures=figures,
        animations=animations,
        caveats=text.caveats(analysis, gifs_left_out),
        spec_toml=data.spec_toml.strip(),
    )


def _tuning_table(data: StudyData, analysis: StudyAnalysis) -> TextTable | None:
    """A tuned study's tuning table (None without tuning)."""
    if data.tuning is None:
        return None
    header, rows = text.tuning_table(data.tuning, text.display_names(analysis))
    return TextTable(header, rows, verdict_column=None)


def figures_in(model: ReportModel | MapModel, section: str) -> list[Figure]:
    """The model's figures shown in ``section``."""
    return [figure for figure in model.figures if figure.section == section]


# ---------------------------------------------------------------------------- the answer map (a study with factors)

MAX_MAP_COLUMNS = 8  # regularized conditions across the map; more (and more than cells): conditions down the page


@dataclasses.dataclass(frozen=True)
class MapTile:
    """One condition in one cell of the verdict map: its primary comparison there."""

    verdict: str  # the cell's verdict (Holm within the cell); "" where the condition has no comparison
    said: str  # the verdict as the table says it ("all runs failed" where no run trained normally)
    speedup: str  # "1.2x", or why there is none ("never reached"); "" without a comparison
    interval: str  # "[1.1, 1.3]", or "" where there is none
    across_map: bool  # the verdict holds after the map-wide correction

    @property
    def marked(self) -> str:
        """The verdict as said, marked where it holds across the map (``faster*``)."""
        return self.said + (text.MAP_MARK if self.across_map else "")


@dataclasses.dataclass(frozen=True)
class MapGrid:
    """The verdict map: cells as rows and conditions as columns, or the other way round when
    there are too many conditions to read across (``cells_as_rows`` False)."""

    corner: str  # what the rows are: "cell" or "condition"
    rows: list[str]
    columns: list[str]
    tiles: list[list[MapTile]]  # [row][column]
    cells_as_rows: bool
    factors: list[str]  # the factors' names, in the order of the cells' values
    values: dict[str, list[str]]  # a cell's label -> its factor values as text (to name it in fewer characters)


@dataclasses.dataclass(frozen=True)
class CellSection:
    """One cell, folded under the map: a one-line summary and the cell's own report (its
    verdict table, setup and key learning curves are shown), and its own caveats."""

    summary: str
    report: ReportModel
    notes: list[str]  # the cell's caveats that are not the whole map's


@dataclasses.dataclass(frozen=True)
class MapModel:
    """Everything the report of a study with factors says, in the order it says it."""

    question: str
    study: str
    answer: str  # across the map, in a few plain sentences
    family: str  # the multiple comparisons, stated
    title: str  # what the verdict map compares
    grid: MapGrid
    table: TextTable  # the grid as text (Markdown)
    figures: list[Figure]  # "summary": the verdict map; "factors": the speed-up against each factor
    cells: list[CellSection]  # in cell order
    setup: list[str]
    caveats: list[str]
    spec_toml: str


def verdict_grid(answer_map: MapAnalysis) -> MapGrid:
    """The map's tiles, oriented so that it reads across: conditions as columns unless there
    are more than :data:`MAX_MAP_COLUMNS` of them and more than cells."""
    names = text.map_names(answer_map)
    conditions = answer_map.conditions
    cells_as_rows = len(conditions) <= MAX_MAP_COLUMNS or len(conditions) <= len(answer_map.cells)
    tiles = [[_tile(answer_map, cell, c.name) for c in conditions] for cell in answer_map.cells]
    cell_labels = [cell.label for cell in answer_map.cells]
    condition_labels = [names[c.name] for c in conditions]
    factor_names = [factor.name for factor in answer_map.factors]
    values = {
        cell.label: [value_text(cell.values[name]) for name in factor_names if name in cell.values]
        for cell in answer_map.cells
    }
    if cells_as_rows:
        return MapGrid("cell", cell_labels, condition_labels, tiles, True, factor_names, values)
    transposed = [[row[column] for row in tiles] for column in range(len(conditions))]
    return MapGrid("condition", condition_labels, cell_labels, transposed, False, factor_names, values)


def _tile(answer_map: MapAnalysis, cell: CellAnalysis, condition: str) -> MapTile:
    found = answer_map.comparison(cell.index, condition)
    if found is None:
        return MapTile("", "-", "", "", False)
    comparison = found.comparison
    speedup, interval = text.speedup_parts(comparison)
    said = text.broken_verdict(cell.analysis.health.get(condition)) or comparison.verdict
    return MapTile(comparison.verdict, said, speedup, interval, found.holds_across_map)


def map_table(grid: MapGrid) -> TextTable:
    """The verdict map as a text table: each entry the verdict (marked where it holds across
    the map) and the speed-up with its interval."""

    def entry(tile: MapTile) -> str:
        return " ".join(part for part in (tile.marked, tile.speedup, tile.interval) if part)

    rows = [[label, *(entry(tile) for tile in tiles)] for label, tiles in zip(grid.rows, grid.tiles, strict=True)]
    return TextTable([grid.corner, *grid.columns], rows, verdict_column=None)


def build_map(
    data: list[StudyData],
    answer_map: MapAnalysis,
    grid: MapGrid,
    figures: list[Figure],
    cell_figures: list[list[Figure]],
) -> MapModel:
    """The report of a study with factors from its cells' data, the map's analysis and grid
    (:func:`verdict_grid`), the map's figures and each cell's (its key learning curves)."""
    reports = [
        build(cell_data, cell.analysis, shown, [])
        for cell_data, cell, shown in zip(data, answer_map.cells, cell_figures, strict=True)
    ]
    common = [note for note in reports[0].caveats if all(note in report.caveats for report in reports)]
    return MapModel(
        question=text.QUESTION,
        study=answer_map.name,
        answer=text.map_answer(answer_map),
        family=text.map_family(answer_map),
        title=text.map_title(answer_map),
        grid=grid,
        table=map_table(grid),
        figures=figures,
        cells=[
            CellSection(text.cell_summary(cell), report, [note for note in report.caveats if note not in common])
            for cell, report in zip(answer_map.cells, reports, strict=True)
        ],
        setup=text.map_setup_lines(answer_map, data),
        caveats=[*text.map_caveats(answer_map), *common],
        spec_toml=reports[0].spec_toml,
    )
