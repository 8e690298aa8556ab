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
from regspeed.errors import ConfigError
from regspeed.report import evidence, html, markdown, model, terminal
from regspeed.report.text import answer, sentence
from regspeed.study import files, results
from regspeed.study.store import Store

__all__ = ["Report", "answer", "sentence", "write"]


@dataclasses.dataclass(frozen=True)
class Report:
    """What :func:`write` produced."""

    html_path: Path
    markdown_path: Path
    table: Table
    analysis: StudyAnalysis
    model: model.ReportModel


def write(folder: Path, out: Path | None = None) -> Report:
    """Analyse the study in ``folder`` and write ``report.html`` and ``summary.md`` into
    ``out`` (default: ``folder``; created if missing, its parent must exist), each replaced
    atomically, never through a symbolic link: one at either name is refused. A study on a
    read-only mount is reported with ``out`` elsewhere."""
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
        data = results.load(store)
        analysis = compare.analyze(data)
        gifs = evidence.animations(store, data, analysis)
    built = model.build(data, analysis, evidence.figures(data, analysis), gifs.made, gifs.left_out)
    with files.writing_into(target, field):
        target.mkdir(exist_ok=True)
    for path, text in ((html_path, html.render(built)), (markdown_path, markdown.render(built))):
        with files.replacing(path, field, text=True) as file:
            file.write(text)
    return Report(html_path, markdown_path, terminal.verdict_table(built), analysis, built)
