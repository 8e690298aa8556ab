"""The report as one self-contained HTML page (``report.html``): figures and GIFs inline."""

from __future__ import annotations

import base64
import html

from regspeed.report.model import Figure, MapModel, ReportModel, TextTable, figures_in

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 1em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin: 0.4em 0; }
.answer { font-size: 1.15em; line-height: 1.45; max-width: 62em; }
figure h2 { font-size: 1.1em; margin: 0.2em 0; }
details { margin: 1em 0; } summary { cursor: pointer; font-weight: 600; }
table { display: block; max-width: 100%; overflow-x: auto; }
.animations { display: flex; flex-wrap: wrap; gap: 1.5em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.faster { color: #1a7f37; font-weight: 600; } .slower { color: #c62828; font-weight: 600; }
.equivalent { color: #1f5fa8; font-weight: 600; }
figure { margin: 1em 0; } figure img { max-width: 100%; } figcaption { color: #555; font-size: 0.9em; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
"""


def _table(table: TextTable) -> list[str]:
    """Rows of cells; a verdict cell carries its verdict as class (coloured by :data:`STYLE`)."""
    escape = html.escape
    parts = ["<table><tr>", *[f"<th>{escape(name)}</th>" for name in table.header], "</tr>"]
    for row in table.rows:
        cells = [
            f"<td class='{escape(cell)}'>{escape(cell)}</td>"
            if i == table.verdict_column
            else f"<td>{escape(cell)}</td>"
            for i, cell in enumerate(row)
        ]
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    return parts


def _figure(figure: Figure, heading: str = "h3") -> str:
    """A figure with its title and caption, the PNG inline."""
    escape = html.escape
    data = base64.b64encode(figure.png).decode("ascii")
    return (
        f"<figure><{heading}>{escape(figure.title)}</{heading}><img alt='{escape(figure.title)}' "
        f"src='data:image/png;base64,{data}'><figcaption>{escape(figure.caption)}</figcaption></figure>"
    )


def _generalization(model: ReportModel, heading: str) -> list[str]:
    """A world with levels: the fitting-vs-generalization table with its sentence (else nothing)."""
    if model.generalization is None:
        return []
    note = html.escape(model.generalization_note or "")
    return [f"<{heading}>Fitting vs generalization</{heading}><p>{note}</p>", *_table(model.generalization)]


def _relearning(model: ReportModel, heading: str) -> list[str]:
    """A changing world: the relearning table with its sentence and the per-phase figures (else nothing)."""
    if model.relearning is None:
        return []
    note = html.escape(model.relearning_note or "")
    figures = [_figure(figure, "h4" if heading == "h2" else "h5") for figure in figures_in(model, "relearning")]
    title = f"<{heading}>Relearning after the world changes</{heading}><p>{note}</p>"
    return [title, *_table(model.relearning), *figures]


def _tuning(model: ReportModel, heading: str) -> list[str]:
    """A tuned study: how each condition's settings were chosen, the scores, the tuning curves."""
    if model.tuning is None:
        return []
    note = html.escape(model.tuning_note or "")
    figures = [_figure(figure, "h4" if heading == "h2" else "h5") for figure in figures_in(model, "tuning")]
    return [f"<{heading}>Tuning</{heading}><p>{note}</p>", *_table(model.tuning), *figures]


def _folded(summary: str, body: list[str]) -> list[str]:
    """A section folded under a one-line summary (``<details>``)."""
    return [f"<details><summary>{html.escape(summary)}</summary>", *body, "</details>"]


def _top(model: ReportModel | MapModel) -> list[str]:
    """The page's head, the question and the answer."""
    escape = html.escape
    return [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>regspeed report: {escape(model.study)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(model.question)}</h1>",
        f"<p class='answer' id='answer'>{escape(model.answer)}</p>",
    ]


def _items(lines: list[str]) -> list[str]:
    """A bulleted list."""
    return ["<ul>", *[f"<li>{html.escape(line)}</li>" for line in lines], "</ul>"]


def _end(model: ReportModel | MapModel) -> list[str]:
    """The caveats, the spec that reproduces the study (folded) and the page's end."""
    escape = html.escape
    parts = ["<h2>Caveats</h2><ul>", *[f"<li>{escape(note)}</li>" for note in model.caveats], "</ul>"]
    reproduce = [
        "<p>Save this spec as <code>spec.toml</code> and run <code>regspeed study spec.toml</code>:</p>",
        f"<pre>{escape(model.spec_toml)}</pre>",
    ]
    return [*parts, *_folded("Reproduce", reproduce), "</body></html>"]


def render(model: ReportModel) -> str:
    """The HTML page of the report: the answer and its picture first, then the learning
    curves, the verdicts and the evidence; the details folded."""
    escape = html.escape
    parts = _top(model)
    parts += [_figure(figure, "h2") for figure in figures_in(model, "summary")]
    curves = figures_in(model, "curves")
    if curves:
        parts.append("<h2>Learning curves</h2>")
        parts += [_figure(figure) for figure in curves]
    parts.append(f"<h2>Verdicts</h2><p>{escape(model.verdict_title)}</p>")
    parts += _table(model.verdicts)
    parts += _relearning(model, "h2")
    parts += _generalization(model, "h2")
    parts += _tuning(model, "h2")
    parts.append("<h2>Evidence</h2>")
    parts += [_figure(figure) for figure in figures_in(model, "evidence")]
    if model.animations:
        parts.append(
            "<h2>Watching the snake</h2><p>The best run of the baseline and of each kind's best "
            "condition, on the same board.</p><div class='animations'>"
        )
        for animation in model.animations:
            data = base64.b64encode(animation.gif).decode("ascii")
            parts.append(
                f"<figure><img alt='{escape(animation.title)}' src='data:image/gif;base64,{data}'>"
                f"<figcaption>{escape(animation.title)}: {escape(animation.caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    parts += _folded("How each verdict was reached", _items(model.findings))
    if model.per_metric is not None:
        side = [
            "<p>Time to each metric's middle threshold against the baseline (for supervised tasks: "
            "fitting on the left, generalization on the right).</p>",
            *_table(model.per_metric),
        ]
        parts += _folded("Each metric side by side", side)
    parts += _folded("Every comparison (every metric and threshold)", _table(model.comparisons))
    parts += _folded("Setup", _items(model.setup))
    return "\n".join(parts + _end(model))


def render_map(model: MapModel) -> str:
    """The HTML page of a study with factors: the answer across the map and the verdict map
    first, the multiple comparisons stated, the speed-up against each factor, then one folded
    section per cell (its answer, verdicts, key learning curves, setup and own caveats)."""
    escape = html.escape
    parts = _top(model)
    parts += [_figure(figure, "h2") for figure in figures_in(model, "summary")]
    parts.append(f"<p>{escape(model.family)}</p>")
    parts += _folded("The answer map as a table", [f"<p>{escape(model.title)}</p>", *_table(model.table)])
    against = figures_in(model, "factors")
    if against:
        parts.append("<h2>The speed-up against each factor</h2>")
        parts += [_figure(figure) for figure in against]
    parts.append(f"<h2>Cells</h2><p>Each cell is a study of its own; {len(model.cells)} cells, in order.</p>")
    for cell in model.cells:
        report = cell.report
        body = [f"<p>{escape(report.answer)}</p>", f"<p>{escape(report.verdict_title)}</p>", *_table(report.verdicts)]
        body += _relearning(report, "h4")
        body += _generalization(report, "h4")
        body += _tuning(report, "h4")
        body += [_figure(figure, "h4") for figure in figures_in(report, "curves")]
        body += _items(report.setup + cell.notes)
        parts += _folded(cell.summary, body)
    parts += _folded("Setup", _items(model.setup))
    return "\n".join(parts + _end(model))
