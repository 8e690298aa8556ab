"""The report of a study: ``report.html`` (self-contained), ``summary.md`` and a terminal table.

The report states the question, the setup, the verdict per condition, the answer in plain
words with its numbers, the evidence (figures), the caveats, and the command that
reproduces it. It works on a partial study (incomplete conditions are marked) and refuses
a missing or damaged store with a clear error.

:func:`write` reads the store once (``results.load``), analyses the data
(``compare.analyze``), builds the report's model once (:mod:`~regspeed.report.model`) and
renders it (:mod:`~regspeed.report.html`, :mod:`~regspeed.report.markdown`,
:mod:`~regspeed.report.terminal`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rich.table import Table

from regspeed.analysis import compare
from regspeed.analysis.compare import StudyAnalysis
from regspeed.report import evidence, html, markdown, model, terminal
from regspeed.report.text import headline, sentence
from regspeed.study import files, results
from regspeed.study.store import Store

__all__ = ["Report", "headline", "sentence", "write"]


@dataclasses.dataclass(frozen=True)
class Report:
    """What :func:`write` produced."""

    html_path: Path
    markdown_path: Path
    table: Table
    analysis: StudyAnalysis
    model: model.ReportModel


def write(folder: Path) -> Report:
    """Analyse the study in ``folder`` and write ``report.html`` and ``summary.md`` there
    (each replaced atomically, never through a symbolic link: one at either name is refused)."""
    html_path, markdown_path = folder / "report.html", folder / "summary.md"
    for path in (html_path, markdown_path):
        files.refuse_link(path, "study")  # before the analysis, which takes a while
    with Store.open(folder) as store:
        data = results.load(store)
        analysis = compare.analyze(data)
        gifs = evidence.animations(store, data, analysis)
    built = model.build(data, analysis, evidence.figures(data, analysis), gifs.made, gifs.left_out)
    for path, text in ((html_path, html.render(built)), (markdown_path, markdown.render(built))):
        with files.replacing(path, "study", text=True) as file:
            file.write(text)
    return Report(html_path, markdown_path, terminal.verdict_table(built), analysis, built)
