"""The report's verdict table for the terminal (Rich), verdicts coloured."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from regspeed.report import text
from regspeed.report.model import MapGrid, MapModel, MapTile, ReportModel
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


WIDTH = 100  # the terminal's columns a table keeps to
SIGNS = {"faster": "▲", "slower": "▼", "equivalent": "=", "inconclusive": "?"}
SHORT_SPEEDUPS = {text.NEVER_REACHED: "never", text.ONLY_THIS: "only it"}


def map_table(model: MapModel, width: int = WIDTH) -> Table:
    """The verdict map of a study with factors: each entry the cell's verdict and speed-up
    (no interval), coloured by the verdict and marked where it holds across the map, in
    :data:`WIDTH` columns without breaking an entry: in words if they fit; else with signs
    (a legend under the table); else also with cells named by their values only; else the
    columns split over several tables, one under another."""
    grid = model.grid
    columns = list(range(len(grid.columns)))
    for short, by_values in ((False, False), (True, False), (True, True)):
        table = _map_part(model, columns, short, by_values)
        if _width(table) <= width:
            return table
    parts = Table.grid()
    parts.title, parts.caption = table.title, table.caption
    chunk: list[int] = []
    for column in columns:
        if chunk and _width(_map_part(model, [*chunk, column], True, True, titled=False)) > width:
            parts.add_row(_map_part(model, chunk, True, True, titled=False))
            chunk = []
        chunk.append(column)
    parts.add_row(_map_part(model, chunk, True, True, titled=False))
    return parts


def _width(table: Table) -> int:
    """The columns ``table`` takes without wrapping."""
    return Console(width=10_000).measure(table).maximum


def _map_part(model: MapModel, columns: list[int], short: bool, by_values: bool, titled: bool = True) -> Table:
    """The verdict map's ``columns`` (indices) as a Rich table."""
    grid = model.grid
    legend = [", ".join(f"{sign} {verdict}" for verdict, sign in SIGNS.items())] if short else []
    if any(tile.across_map for tiles in grid.tiles for tile in tiles):
        legend.append(f"{text.MAP_MARK} holds after Holm's correction over the whole map")
    if by_values and not grid.cells_as_rows:
        legend.append(f"cells by their {', '.join(grid.factors)}")
    table = Table(box=box.SIMPLE_HEAD)
    if titled:
        table.title, table.caption = terminal_text(model.title), terminal_text("; ".join(legend)) or None
    table.add_column(terminal_text(grid.corner), no_wrap=True)
    for column in columns:
        table.add_column(terminal_text(_heading(grid, grid.columns[column], by_values)), justify="right", no_wrap=True)
    for label, tiles in zip(grid.rows, grid.tiles, strict=True):
        table.add_row(terminal_text(label), *(_entry(tiles[column], short) for column in columns))
    return table


def _heading(grid: MapGrid, label: str, by_values: bool) -> str:
    """A column's heading: a condition, or a cell in lines (``board=6`` over ``algorithm=ppo``,
    or its values only)."""
    if grid.cells_as_rows:
        return label
    return "\n".join(grid.values.get(label) or [label]) if by_values else label.replace(", ", "\n")


def _entry(tile: MapTile, short: bool) -> str:
    """A tile as Rich markup: the verdict (or its sign) and the speed-up, coloured."""
    if not tile.verdict:
        return "-"
    if short:
        said = SIGNS.get(tile.said) or ("failed " if "failed" in tile.said else "frozen ")
        shown = f"{said}{SHORT_SPEEDUPS.get(tile.speedup, tile.speedup)}{text.MAP_MARK if tile.across_map else ''}"
    else:
        shown = f"{tile.marked} {tile.speedup}"
    colour = VERDICT_COLOURS.get(tile.verdict) if tile.said == tile.verdict else None
    shown = terminal_text(shown)
    return f"[{colour}]{shown}[/]" if colour else shown
