"""The report as one self-contained HTML page (``report.html``): figures and GIFs inline."""

from __future__ import annotations

import base64
import html

from regspeed.report.model import ReportModel, TextTable

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.faster { color: #1a7f37; font-weight: 600; } .slower { color: #c62828; font-weight: 600; }
.equivalent { color: #1f5fa8; font-weight: 600; }
figure { margin: 2em 0; } figure img { max-width: 100%; } figcaption { color: #555; font-size: 0.9em; }
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


def render(model: ReportModel) -> str:
    """The HTML page of the report."""
    escape = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>regspeed report: {escape(model.study)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(model.question)}</h1>",
        f"<h2>Answer</h2><p>{escape(model.answer)}</p><ul>",
    ]
    parts += [f"<li>{escape(finding)}</li>" for finding in model.findings]
    parts.append("</ul><h2>Setup</h2><ul>")
    parts += [f"<li>{escape(line)}</li>" for line in model.setup]
    parts.append(f"</ul><h2>Verdicts</h2><p>{escape(model.verdict_title)}</p>")
    parts += _table(model.verdicts)
    if model.per_metric is not None:
        parts.append(
            "<h2>Each metric side by side</h2><p>Time to each metric's middle threshold against the "
            "baseline (for supervised tasks: fitting on the left, generalization on the right).</p>"
        )
        parts += _table(model.per_metric)
    parts.append("<h2>All comparisons</h2>")
    parts += _table(model.comparisons)
    parts.append("<h2>Evidence</h2>")
    for figure in model.figures:
        data = base64.b64encode(figure.png).decode("ascii")
        parts.append(
            f"<figure><h3>{escape(figure.title)}</h3><img alt='{escape(figure.title)}' "
            f"src='data:image/png;base64,{data}'><figcaption>{escape(figure.caption)}</figcaption></figure>"
        )
    if model.animations:
        parts.append(
            "<h2>Watching the snake</h2><p>The best run of the baseline and of each kind's best "
            "condition, on the same board.</p><div style='display:flex;flex-wrap:wrap;gap:1.5em'>"
        )
        for animation in model.animations:
            data = base64.b64encode(animation.gif).decode("ascii")
            parts.append(
                f"<figure><img alt='{escape(animation.title)}' src='data:image/gif;base64,{data}'>"
                f"<figcaption>{escape(animation.title)}: {escape(animation.caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append("<h2>Caveats</h2><ul>")
    parts += [f"<li>{escape(note)}</li>" for note in model.caveats]
    parts.append(
        "</ul><h2>Reproduce</h2><p>Save this spec as <code>spec.toml</code> and run "
        "<code>regspeed study spec.toml</code>:</p>"
    )
    parts.append(f"<pre>{escape(model.spec_toml)}</pre></body></html>")
    return "\n".join(parts)
