"""The report as Markdown (``summary.md``): the words and tables of the model, no figures."""

from __future__ import annotations

from regspeed.report.model import ReportModel, TextTable


def _table(table: TextTable) -> list[str]:
    lines = ["| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
    return lines + ["| " + " | ".join(row) + " |" for row in table.rows]


def render(model: ReportModel) -> str:
    """The Markdown text of the report."""
    lines = [f"# {model.question}", "", f"## Answer ({model.study})", "", model.answer, ""]
    lines += [f"- {finding}" for finding in model.findings]
    lines += ["", f"## Verdicts: {model.verdict_title}", "", *_table(model.verdicts)]
    if model.per_metric is not None:
        lines += ["", "## Each metric side by side", "", *_table(model.per_metric)]
    lines += ["", "## Setup", ""] + [f"- {line}" for line in model.setup]
    lines += ["", "## All comparisons", "", *_table(model.comparisons)]
    lines += ["", "## Caveats", ""] + [f"- {note}" for note in model.caveats]
    lines += [
        "",
        "## Reproduce",
        "",
        "Save the spec below as `spec.toml`, then run `regspeed study spec.toml`.",
        "",
        "```toml",
        model.spec_toml,
        "```",
        "",
    ]
    return "\n".join(lines)
