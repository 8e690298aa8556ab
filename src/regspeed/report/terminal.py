"""The report's verdict table for the terminal (Rich), verdicts coloured."""

from __future__ import annotations

from rich import box
from rich.table import Table

from regspeed.report.model import ReportModel
from regspeed.safe_text import terminal_text

VERDICT_COLOURS = {"faster": "green", "slower": "red", "equivalent": "blue"}
LEFT_OUT = ("final [95% CI]", "P(AUC better)")  # in the HTML and Markdown reports; the terminal keeps to 100 columns


def verdict_table(model: ReportModel) -> Table:
    """The verdict table: one row per condition, its primary comparison, in few enough
    columns to fit 100 without breaking a word (no cell wraps). Text from the study is shown
    as text (escape sequences stripped, Rich markup escaped)."""
    verdicts = model.verdicts
    keep = [index for index, name in enumerate(verdicts.header) if name not in LEFT_OUT]
    table = Table(title=terminal_text(model.verdict_title), box=box.SIMPLE_HEAD)
    for index in keep:
        table.add_column(verdicts.header[index], justify="left" if index == 0 else "right", no_wrap=True)
    for row in verdicts.rows:
        cells = [terminal_text(cell) for cell in row]
        if verdicts.verdict_column is not None:
            colour = VERDICT_COLOURS.get(cells[verdicts.verdict_column])
            if colour:
                cells[verdicts.verdict_column] = f"[{colour}]{cells[verdicts.verdict_column]}[/]"
        table.add_row(*[cells[index] for index in keep])
    return table

