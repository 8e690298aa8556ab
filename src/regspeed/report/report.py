"""The report of a study: ``report.html`` (self-contained), ``summary.md`` and a terminal table.

The report states the question, the setup, the verdict per condition, the answer in plain
words with its numbers, the evidence (figures), the caveats, and the command that
reproduces it. It works on a partial study (incomplete conditions are marked) and refuses
a missing or damaged store with a clear error.

:func:`write` reads the store once (``results.load``), analyses the data
(``compare.analyze``), builds the report's model once (:mod:`~regspeed.report.model`) and
renders it (:mod:`~regspeed.report.html`, :mod:`~regspeed.report.markdown`,
:mod:`~regspeed.report.terminal`). A study with factors (more than one cell) is reported as
an answer map: every cell read (``results.load(store, cell=i)``) and analysed as a study of
its own, side by side (``analysis.factors.analyze``), with Holm's correction over the whole
map as well as within each cell.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from rich.table import Table

from regspeed.analysis import compare, factors
from regspeed.analysis.compare import StudyAnalysis
from regspeed.analysis.factors import MapAnalysis
from regspeed.errors import ConfigError
from regspeed.report import evidence, html, markdown, model, terminal, text
from regspeed.report.text import sentence
from regspeed.study import files, results
from regspeed.study import spec as spec_module
from regspeed.study.results import StudyData
from regspeed.study.store import Store

__all__ = ["Report", "answer", "sentence", "write"]


@dataclasses.dataclass(frozen=True)
class Report:
    """What :func:`write` produced (a study with factors: the map's analysis and model)."""

    html_path: Path
    markdown_path: Path
    table: Table
    analysis: StudyAnalysis | MapAnalysis
    model: model.ReportModel | model.MapModel


def answer(analysis: StudyAnalysis | MapAnalysis) -> str:
    """The answer in plain sentences: a study's, or across the map of a study with factors."""
    return text.map_answer(analysis) if isinstance(analysis, MapAnalysis) else text.answer(analysis)


def write(folder: Path, out: Path | None = None) -> Report:
    """Analyse the study in ``folder`` and write ``report.html`` and ``summary.md`` into
    ``out`` (default: ``folder``; created if missing, its parent must exist), each replaced
    atomically, never through a symbolic link: one at either name is refused. A study on a
    read-only mount is reported with ``out`` elsewhere. A study with factors (more than one
    cell) gets the answer map: every cell analysed as a study of its own, side by side."""
    target, field = (folder, "study") if out is None else (out, "out")
    if out is not None:
        if not out.parent.is_dir():
            raise ConfigError("out", f"folder {out.parent} does not exist; create it or choose another path")
        if out.exists() and not out.is_dir():
            raise ConfigError("out", f"{out} is not a folder; give a folder for report.html and summary.md")
    html_path, markdown_path = target / "report.html", target / "summary.md"
    files.refuse_unwritable(target, field)  # before the analysis, which takes a while
    for path in (html_path, markdown_path):
        files.refuse_link(path, field)
    with Store.open(folder) as store:
        if results.tuning_pending(store):
            raise ConfigError("study", f"{folder} is still tuning: its report follows once the tuning runs have all "
                              f"finished; `regspeed status {folder / 'tuning'}` shows them")  # fmt: skip
        several = len(store.cells()) > 1
        if several:
            cells, found = _every_cell(store), _factors(store)
        else:
            data = results.load(store)
            analysis = compare.analyze(data)
            gifs = evidence.animations(store, data, analysis)
    if several:
        answer_map = factors.analyze(cells, found)
        grid = model.verdict_grid(answer_map)
        figures, per_cell = evidence.map_figures(cells, answer_map, grid)
        built: model.ReportModel | model.MapModel = model.build_map(cells, answer_map, grid, figures, per_cell)
        pages = (html.render_map(built), markdown.render_map(built))
        table, analysed = terminal.map_table(built), answer_map
    else:
        built = model.build(data, analysis, evidence.figures(data, analysis), gifs.made, gifs.left_out)
        pages = (html.render(built), markdown.render(built))
        table, analysed = terminal.verdict_table(built), analysis
    with files.writing_into(target, field):
        target.mkdir(exist_ok=True)
    for path, page in zip((html_path, markdown_path), pages, strict=True):
        with files.replacing(path, field, text=True) as file:
            file.write(page)
    return Report(html_path, markdown_path, table, analysed, built)


def _every_cell(store: Store) -> list[StudyData]:
    """Every cell's data (``results.load`` of each; the store's runs and curves read once),
    with the curves its answer and the report need (``compare.answer_only``: the
    exploratory metrics' comparisons would be computed and never shown)."""
    once = results.read_once(store)
    return [compare.answer_only(results.load(once, cell=index)) for index in range(len(store.cells()))]


def _factors(store: Store) -> list[spec_module.Factor]:
    """The study's factors with their values, from its stored spec (none if it cannot be read)."""
    stored = json.loads(store.meta()["spec_json"])
    try:
        return spec_module.factors(spec_module.Spec.model_validate(spec_module.with_added_defaults(stored)))
    except ValueError:  # pydantic's ValidationError: a spec stored by another version
        return []
