"""Text from a study is shown as text: a crafted store's names and messages cannot drive
the terminal (escape sequences), inject Rich markup, or carry HTML into ``summary.md``."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from regspeed.cli import app
from regspeed.report import markdown, terminal
from regspeed.report.model import ReportModel, TextTable
from regspeed.safe_text import printable, terminal_text

HOSTILE = "l2\x1b[2J\x1b]0;owned\x07\x9b31m[red]boom[/]<img src=x onerror=alert(1)>|x"


def test_printable_drops_escape_sequences_and_control_characters() -> None:
    assert printable(HOSTILE) == "l2" + "31m[red]boom[/]<img src=x onerror=alert(1)>|x"
    assert printable("a\nb\tc\x00d\x7f") == "a b cd"
    assert printable("l2@0.001 seed 3: weight_l2 became nan") == "l2@0.001 seed 3: weight_l2 became nan"


def test_terminal_text_shows_markup_literally() -> None:
    from rich.console import Console

    console = Console(record=True, width=200, force_terminal=True, color_system="truecolor")
    console.print(terminal_text(HOSTILE))
    shown = console.export_text()
    assert "[red]boom[/]" in shown and "\x1b[2J" not in console.export_text(styles=True)


def _model(name: str, spec_toml: str) -> ReportModel:
    return ReportModel(
        question="Q?",
        study=name,
        answer=f"{name} was slower.",
        findings=[f"{name}: finding"],
        setup=["setup"],
        verdict_title=f"{name}: time to score 1",
        verdicts=TextTable(["condition", "verdict"], [["none", "baseline"], [name, "slower"]], 1),
        per_metric=None,
        comparisons=TextTable(["condition", "verdict"], [[name, "slower"]], 1),
        figures=[],
        animations=[],
        caveats=[f"Run {name} seed 0 failed: {name}"],
        spec_toml=spec_toml,
    )


def test_markdown_escapes_html_and_table_pipes_and_keeps_the_spec_fenced() -> None:
    spec_toml = 'name = "x"\n```\n<script>alert(1)</script>\n````'
    text = markdown.render(_model(HOSTILE, spec_toml))
    before_spec = text[: text.index("## Reproduce")]
    assert "<img" not in before_spec and "&lt;img src=x onerror=alert(1)&gt;" in before_spec
    assert "\x1b" not in text and "\x07" not in text
    assert "| l2" in before_spec and "\\|x | slower |" in before_spec  # the pipe is not a column
    fence = "`" * 5  # longer than the longest backtick run in the spec
    assert text.endswith(f"{fence}toml\n{spec_toml}\n{fence}\n")


def test_terminal_verdict_table_escapes_names() -> None:
    table = terminal.verdict_table(_model(HOSTILE, ""))
    cells = list(table.columns[0].cells)
    assert cells[1] == terminal_text(HOSTILE) and "\x1b" not in cells[1] and "\\[red]" in cells[1]
    assert list(table.columns[1].cells)[1] == "[red]slower[/]"  # our own colouring stays


@pytest.mark.slow
def test_status_and_report_of_a_crafted_store_show_names_as_text(tiny_study: Path, tmp_path: Path) -> None:
    folder = tmp_path / "crafted"
    shutil.copytree(tiny_study, folder)
    with sqlite3.connect(folder / "study.sqlite") as db:
        db.execute("UPDATE conditions SET name = ? WHERE name = 'l2@0.001'", (HOSTILE,))
        db.execute("UPDATE runs SET status = 'failed', error = ? WHERE run_id = 1", ("\x1b]0;title\x07[bold]bad[/]",))
    status = CliRunner().invoke(app, ["status", str(folder)], color=True)
    assert status.exit_code == 0, status.output
    assert "\x1b[2J" not in status.output and "\x1b]0;" not in status.output and "\x9b" not in status.output
    assert "[red]boom[/]" in status.output and "[bold]bad[/]" in status.output
    report = CliRunner().invoke(app, ["report", str(folder)], color=True)
    assert report.exit_code == 0, report.output
    assert "\x1b[2J" not in report.output and "[red]boom[/]" in report.output
    summary = (folder / "summary.md").read_text()
    assert "<img" not in summary.split("## Reproduce")[0] and "&lt;img src=x onerror=alert(1)&gt;" in summary
