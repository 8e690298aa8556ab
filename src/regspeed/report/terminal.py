"""The report's verdict table for the terminal (Rich), verdicts coloured."""

from __future__ import annotations

from rich.table import Table

from regspeed.report.model import ReportModel
from regspeed.safe_text import terminal_text

VERDICT_COLOURS = {"faster": "green", "slower": "red", "equivalent": "blue"}


def verdict_table(model: ReportModel) -> Table:
    """The verdict table: one row per condition, its primary comparison. Text from the study
    is shown as text (escape sequences stripped, Rich markup escaped)."""
    verdicts = model.verdicts
    table = Table(title=terminal_text(model.verdict_title))
    for index, name in enumerate(verdicts.header):
        table.add_column(name, justify="left" if index == 0 else "right", no_wrap=index == 0)
    for row in verdicts.rows:
        cells = [terminal_text(cell) for cell in row]
        if verdicts.verdict_column is not None:
            colour = VERDICT_COLOURS.get(cells[verdicts.verdict_column])
            if colour:
                cells[verdicts.verdict_column] = f"[{colour}]{cells[verdicts.verdict_column]}[/]"
        table.add_row(*cells)
    return table

