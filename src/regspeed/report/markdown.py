"""The report as Markdown (``summary.md``): the words and tables of the model, no figures."""

from __future__ import annotations

import html
import re

from regspeed.report.model import MapModel, ReportModel, TextTable
from regspeed.safe_text import printable


def _text(text: str) -> str:
    """Words from the study as Markdown text: printable, with HTML (``<``, ``>``, ``&``)
    escaped, so a crafted name cannot carry markup into a Markdown viewer."""
    return html.escape(printable(text), quote=False)


def _cell(text: str) -> str:
    return _text(text).replace("|", "\\|")


def _table(table: TextTable) -> list[str]:
    lines = ["| " + " | ".join(_cell(name) for name in table.header) + " |", "|" + "---|" * len(table.header)]
    return lines + ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in table.rows]


def _generalization(model: ReportModel, heading: str) -> list[str]:
    """A world with levels: the fitting-vs-generalization table with its sentence (else nothing)."""
    if model.generalization is None:
        return []
    return ["", f"{heading} Fitting vs generalization", "", _text(model.generalization_note or ""), "",
            *_table(model.generalization)]  # fmt: skip


def _relearning(model: ReportModel, heading: str) -> list[str]:
    """A changing world: the relearning table with its sentence (else nothing)."""
    if model.relearning is None:
        return []
    return ["", f"{heading} Relearning after the world changes", "", _text(model.relearning_note or ""), "",
            *_table(model.relearning)]  # fmt: skip


def _tuning(model: ReportModel, heading: str) -> list[str]:
    """A tuned study: how each condition's settings were chosen, with the scores (else nothing)."""
    if model.tuning is None:
        return []
    return ["", f"{heading} Tuning", "", _text(model.tuning_note or ""), "", *_table(model.tuning)]


def _code_block(code: str, language: str) -> list[str]:
    """A fenced block that the code cannot close: the fence is longer than any backtick run in it."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + language, code, fence]


def render(model: ReportModel) -> str:
    """The Markdown text of the report: the answer first, then the verdicts, how each was
    reached, setup, every comparison, caveats and the spec that reproduces it."""
    lines = _top(model)
    lines += [f"## Verdicts: {_text(model.verdict_title)}", "", *_table(model.verdicts)]
    lines += _relearning(model, "##")
    lines += _generalization(model, "##")
    lines += _tuning(model, "##")
    lines += ["", "## How each verdict was reached", "", *_bullets(model.findings)]
    if model.per_metric is not None:
        lines += ["", "## Each metric side by side", "", *_table(model.per_metric)]
    lines += ["", "## Setup", "", *_bullets(model.setup)]
    lines += ["", "## All comparisons", "", *_table(model.comparisons)]
    return "\n".join(lines + _end(model))


def _top(model: ReportModel | MapModel) -> list[str]:
    """The question and the answer."""
    return [f"# {model.question}", "", f"## Answer ({_text(model.study)})", "", _text(model.answer), ""]


def _bullets(items: list[str]) -> list[str]:
    return [f"- {_text(item)}" for item in items]


def _end(model: ReportModel | MapModel) -> list[str]:
    """The caveats and the spec that reproduces the study."""
    return [
        "",
        "## Caveats",
        "",
        *_bullets(model.caveats),
        "",
        "## Reproduce",
        "",
        "Save the spec below as `spec.toml`, then run `regspeed study spec.toml`.",
        "",
        *_code_block(model.spec_toml, "toml"),
        "",
    ]


def render_map(model: MapModel) -> str:
    """The Markdown text of a study with factors: the answer across the map, the verdict map
    as a table, the multiple comparisons stated, then each cell's answer and verdict table,
    the setup, caveats and the spec."""
    lines = _top(model)
    lines += [f"## The answer map: {_text(model.title)}", "", *_table(model.table), ""]
    lines += ["## Multiple comparisons", "", _text(model.family), "", "## Cells"]
    for cell in model.cells:
        report = cell.report
        lines += ["", f"### {_text(cell.summary)}", "", _text(report.answer), "", *_table(report.verdicts)]
        lines += _relearning(report, "####")
        lines += _generalization(report, "####")
        lines += _tuning(report, "####")
    lines += ["", "## Setup", "", *_bullets(model.setup)]
    return "\n".join(lines + _end(model))
