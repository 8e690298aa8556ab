"""The report of a study with factors (the answer map): the map's analysis and its Holm
correction across cells, the answer's words for known verdicts, the verdict map as a grid,
text table and terminal table (100 columns), the per-cell sections, hostile text, the
bootstrap shortcuts equal to the direct computations, and (slow) a real two-cell study run
and reported, opened in headless Chromium."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from scipy import stats as scipy_stats
from test_analysis import check_layout_in_chromium, named_study

from regspeed.analysis import compare, factors, stats
from regspeed.report import evidence, html, markdown, model, plots, terminal, text
from regspeed.study.results import StudyData
from regspeed.study.spec import Factor

BOARD = Factor("board", (5, 6))
SEEDS = 12


def _cell(label: str, times: dict[str, np.ndarray]) -> StudyData:
    """One cell's data, no store: per condition (``kind@strength`` names) the times at which
    its runs' score curves reach 1."""
    return dataclasses.replace(named_study(times), cell=label)


def _known_map() -> list[StudyData]:
    """Two cells (board 5 and 6): L2 1e-3 twice as fast on board 5 and 1.5x as slow on board 6,
    L2 1e-2 within 1% of the baseline in both, L1 1e-3 40% faster or slower seed by seed."""
    rng = np.random.default_rng(8)
    cells = []
    for label, change in (("board=5", 0.5), ("board=6", 1.5)):
        base = rng.uniform(5_000, 7_000, SEEDS)
        cells.append(
            _cell(
                label,
                {
                    "none": base,
                    "l2@0.001": base * change,
                    "l2@0.01": base * rng.uniform(0.99, 1.01, SEEDS),
                    "l1@0.001": base * np.tile([1.4, 1 / 1.4], SEEDS // 2),
                },
            )
        )
    return cells


@pytest.fixture(scope="module")
def known() -> factors.MapAnalysis:
    return factors.analyze(_known_map(), [BOARD])


# ------------------------------------------------------------------------------ analysis


def test_each_cell_is_analysed_as_a_study_of_its_own(known: factors.MapAnalysis) -> None:
    assert [(cell.index, cell.label, cell.values) for cell in known.cells] == [
        (0, "board=5", {"board": 5}),
        (1, "board=6", {"board": 6}),
    ]
    assert [c.name for c in known.conditions] == ["l2@0.001", "l2@0.01", "l1@0.001"]
    verdicts = [[known.comparison(cell, c.name).comparison.verdict for c in known.conditions] for cell in (0, 1)]
    assert verdicts == [["faster", "equivalent", "inconclusive"], ["slower", "equivalent", "inconclusive"]]
    assert known.varying == [BOARD] and known.margin == 1.1


def test_the_map_wide_correction_is_holm_over_every_primary_comparison(known: factors.MapAnalysis) -> None:
    """Both tests, over all 6 comparisons at once; a cell's verdict holds across the map
    only if the map-wide p-values give it too."""
    raw = [found.comparison for found in known.comparisons]
    np.testing.assert_allclose([f.p_map for f in known.comparisons], stats.holm([c.p_value for c in raw]))
    np.testing.assert_allclose(
        [f.p_equivalence_map for f in known.comparisons], stats.holm([c.p_equivalence for c in raw])
    )
    assert all(f.holds_across_map == (f.comparison.verdict != "inconclusive") for f in known.comparisons)
    # a difference shown within each cell (Holm over 3: p = 0.03) is not shown over the map's 6
    borderline = []
    for cell in known.cells:
        primary = {
            name: dataclasses.replace(c, p_value=0.01 if name == "l2@0.001" else 0.5, p_equivalence=0.5)
            for name, c in cell.analysis.primary.items()
        }
        primary["l2@0.001"] = dataclasses.replace(primary["l2@0.001"], verdict="faster", p_holm=0.03)
        borderline.append(dataclasses.replace(cell.analysis, primary=primary))
    again = factors.side_by_side(borderline, ["board=5", "board=6"], [BOARD])
    found = again.comparison(0, "l2@0.001")
    assert found.p_map == pytest.approx(0.06) and found.map_verdict == "inconclusive"
    assert not found.holds_across_map and found.comparison.verdict == "faster"


def test_a_cell_analysed_for_its_answer_only_gives_the_same_answer() -> None:
    """A map analyses each cell's answer metric (and the diagnostics): the exploratory
    metrics' comparisons are left out, the primary ones are the same."""
    data = _known_map()[0]
    score = data.curves["score"]
    steps = [dataclasses.replace(c, values=c.values * 150) for c in score]
    full = dataclasses.replace(
        data, speed_metrics=("score", "steps"), thresholds={"score": [1.0], "steps": [100.0]},
        curves={**data.curves, "steps": steps},
    )  # fmt: skip
    assert compare.answer_metric(full) == "score"
    reduced = compare.answer_only(full)
    assert set(reduced.curves) == {"score", "grad_cosine"}
    everything, answered = compare.analyze(full), compare.analyze(reduced)
    assert {c.metric for c in everything.comparisons} == {"score", "steps"}
    assert {c.metric for c in answered.comparisons} == {"score"} and answered.primary == everything.primary
    assert answered.power == everything.power and answered.health == everything.health


def test_cells_whose_labels_name_no_combination_of_the_factors_have_no_values() -> None:
    cells = _known_map()
    found = factors.side_by_side([compare.analyze(c) for c in cells], ["x", "y"], [BOARD])
    assert [cell.values for cell in found.cells] == [{}, {}]


# ------------------------------------------------------------------------------ words


def test_the_answer_says_where_the_verdict_changes_with_the_factor(known: factors.MapAnalysis) -> None:
    assert text.map_answer(known) == (
        "L2 1e-2 changed the time by less than 10% in every cell. "
        "The answer changes with board: L2 1e-3 was faster at board=5 and slower at board=6. "
        "For L1 1e-3, 12 seeds per cell cannot tell in any cell; all 4 decisive verdicts hold after Holm's "
        "correction over all 6 comparisons of the map (marked *). "
        "Learning speed here is the updates a run needs to reach a the score of 1 in every cell."
    )


def test_the_answer_counts_a_change_that_no_one_factor_explains() -> None:
    """Four cells (board x hidden): faster in one cell only, so neither factor explains it."""
    rng = np.random.default_rng(2)
    hidden = Factor("hidden", (8, 16))
    cells = []
    for board in BOARD.values:
        for width in hidden.values:
            base = rng.uniform(5_000, 7_000, SEEDS)
            change = 0.5 if (board, width) == (5, 8) else rng.uniform(0.99, 1.01, SEEDS)
            cells.append(_cell(f"board={board}, hidden={width}", {"none": base, "l2@0.001": base * change}))
    answer_map = factors.analyze(cells, [BOARD, hidden])
    said = text.map_answer(answer_map)
    assert "The answer changes from cell to cell for L2 1e-3 (equivalent in 3 of 4 cells, faster in 1)." in said
    assert said.startswith("The answer changes")  # nothing was the same in every cell


def test_a_change_with_a_factor_of_three_values_groups_its_values() -> None:
    rng = np.random.default_rng(3)
    boards = Factor("board", (5, 6, 7))
    cells = []
    for board, change in zip(boards.values, (0.5, 0.5, 1.5), strict=True):
        base = rng.uniform(5_000, 7_000, SEEDS)
        cells.append(_cell(f"board={board}", {"none": base, "l2@0.001": base * change}))
    said = text.map_answer(factors.analyze(cells, [boards]))
    assert "The answer changes with board: L2 1e-3 was faster at board=5 or 6 and slower at board=7." in said


def test_the_family_is_stated(known: factors.MapAnalysis) -> None:
    family = text.map_family(known)
    assert "its 3 primary comparisons" in family and "The map holds 2 cells and 6 primary comparisons" in family
    assert family.endswith("All 4 decisive verdicts hold after it (marked *).")


# ------------------------------------------------------------------------------ the grid, tables and pages


def test_the_verdict_map_grid_and_its_text_table(known: factors.MapAnalysis) -> None:
    grid = model.verdict_grid(known)
    assert grid.cells_as_rows and grid.corner == "cell"
    assert grid.rows == ["board=5", "board=6"] and grid.columns == ["L2 1e-3", "L2 1e-2", "L1 1e-3"]
    assert [[tile.verdict for tile in tiles] for tiles in grid.tiles] == [
        ["faster", "equivalent", "inconclusive"],
        ["slower", "equivalent", "inconclusive"],
    ]
    table = model.map_table(grid)
    assert table.header == ["cell", "L2 1e-3", "L2 1e-2", "L1 1e-3"]
    first = known.comparison(0, "l2@0.001").comparison
    assert table.rows[0][:2] == ["board=5", f"faster* {text.ratio(first)}"]
    assert re.fullmatch(r"slower\* \d\.\d+x \[\d\.\d+, \d\.\d+\]", table.rows[1][1])
    assert re.fullmatch(r"inconclusive \S+x \[.*\]", table.rows[1][3])
    assert grid.values == {"board=5": ["5"], "board=6": ["6"]}


def test_many_conditions_go_down_the_page(known: factors.MapAnalysis) -> None:
    many = dataclasses.replace(known, conditions=known.conditions * 3)  # 9 > MAX_MAP_COLUMNS, and more than cells
    grid = model.verdict_grid(many)
    assert not grid.cells_as_rows and grid.corner == "condition"
    assert len(grid.rows) == 9 and grid.columns == ["board=5", "board=6"]
    assert grid.tiles[0][1].verdict == "slower"  # L2 1e-3 in board=6


@pytest.fixture(scope="module")
def built() -> model.MapModel:
    cells = _known_map()
    answer_map = factors.analyze(cells, [BOARD])
    grid = model.verdict_grid(answer_map)
    figures, per_cell = evidence.map_figures(cells, answer_map, grid)
    return model.build_map(cells, answer_map, grid, figures, per_cell)


def test_the_page_has_the_answer_the_map_and_a_folded_section_per_cell(built: model.MapModel) -> None:
    assert [figure.section for figure in built.figures] == ["summary", "factors"]
    page = html.render_map(built)
    order = [
        "class='answer'", "The answer map</h2>", "Each cell is a study of its own", "The speed-up against board",
        "<h2>Cells</h2>", "<summary>board=5: 1 faster, 1 equivalent, 1 inconclusive</summary>",
        "<summary>board=6: 1 slower, 1 equivalent, 1 inconclusive</summary>", "<h2>Caveats</h2>",
    ]  # fmt: skip
    positions = [page.index(part) for part in order]
    assert positions == sorted(positions)
    cell_section = page[positions[5] : positions[6]]
    assert "<td class='faster'>faster</td>" in cell_section and "Learning curves: the score" in cell_section
    assert cell_section.count("data:image/png;base64,") == 1  # the key learning curves, nothing more
    assert page.count("data:image/png;base64,") == 2 + 2 and "data:image/gif" not in page
    assert "http://" not in page and "https://" not in page


def test_markdown_has_the_answer_the_map_table_the_family_then_each_cells_verdicts(built: model.MapModel) -> None:
    summary = markdown.render_map(built)
    order = [
        "## Answer (synthetic)", "## The answer map: synthetic: time to score 1 vs each cell's baseline",
        "| cell | L2 1e-3 | L2 1e-2 | L1 1e-3 |", "## Multiple comparisons",
        "### board=5: 1 faster, 1 equivalent, 1 inconclusive", "| condition | verdict | speed-up [95% CI] |",
        "### board=6: 1 slower", "## Caveats", "## Reproduce",
    ]  # fmt: skip
    positions = [summary.index(part) for part in order]
    assert positions == sorted(positions)


def _shown(table: object, width: int = 100) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(table)
    return out.getvalue()


def test_the_terminal_map_is_verdicts_and_speed_ups_in_words_when_they_fit(built: model.MapModel) -> None:
    table = terminal.map_table(built)
    assert [column.header for column in table.columns] == ["cell", "L2 1e-3", "L2 1e-2", "L1 1e-3"]
    assert next(iter(table.columns[1].cells)).startswith("[green]faster* ")
    shown = _shown(table)
    assert "slower* " in shown and max(len(line) for line in shown.splitlines()) <= 100


def test_a_large_terminal_map_keeps_to_100_columns_without_breaking_an_entry(built: model.MapModel) -> None:
    """24 conditions x 8 cells: signs for verdicts and cells by their values; with long names
    (or 16 cells) the columns split over tables, one under another."""
    tile = built.grid.tiles[0][0]
    cells = [f"board={b}, algorithm={a}" for b in (6, 8, 10, 12) for a in ("ppo", "dqn")]

    def shown(names: list[str], columns: list[str]) -> list[str]:
        grid = model.MapGrid(
            "condition", names, columns, [[tile] * len(columns) for _ in names], False, ["board", "algorithm"],
            {label: label.replace("board=", "").replace("algorithm=", "").split(", ") for label in cells},
        )  # fmt: skip
        text_ = _shown(terminal.map_table(dataclasses.replace(built, grid=grid)))
        assert max(len(line) for line in text_.splitlines()) <= 100 and "…" not in text_
        return text_.splitlines()

    short = [f"weight decay {i}e-5" for i in range(24)]
    lines = shown(short, cells)
    assert sum(short[5] in line for line in lines) == 1  # one line per row: the whole map in one table
    assert any("▲" in line for line in lines) and any("cells by their board, algorithm" in line for line in lines)
    long = [f"L2 to the initial weights (policy, biases) {i}e-5" for i in range(24)]
    assert sum(long[5] in line for line in shown(long, cells)) == 2  # two parts, one under the other
    assert sum(short[5] in line for line in shown(short, cells * 2)) == 2


# ------------------------------------------------------------------------------ hostile text


HOSTILE = "l2\x1b[2J\x9b31m[red]boom[/]<img src=x onerror=alert(1)>|x $\\frac{1}{$"


def test_names_and_labels_from_a_store_are_shown_as_text() -> None:
    cells = _known_map()
    crafted = []
    for cell in cells:
        renamed = {"l1@0.001": HOSTILE}
        conditions = [dataclasses.replace(c, name=renamed.get(c.name, c.name)) for c in cell.conditions]
        runs = [dataclasses.replace(r, condition=renamed.get(r.condition, r.condition)) for r in cell.runs]
        curves = {
            metric: [dataclasses.replace(c, condition=renamed.get(c.condition, c.condition)) for c in per]
            for metric, per in cell.curves.items()
        }
        label = HOSTILE + cell.cell
        crafted.append(dataclasses.replace(cell, conditions=conditions, runs=runs, curves=curves, cell=label))
    answer_map = factors.analyze(crafted, [BOARD])
    grid = model.verdict_grid(answer_map)
    figures, per_cell = evidence.map_figures(crafted, answer_map, grid)  # matplotlib draws "$" as text
    built = model.build_map(crafted, answer_map, grid, figures, per_cell)
    page = html.render_map(built)
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    summary = markdown.render_map(built)
    before = summary[: summary.index("## Reproduce")]
    assert "<img" not in before and "\x1b" not in summary and "\\|x" in before
    out = io.StringIO()
    Console(file=out, width=100, force_terminal=True, color_system="truecolor").print(terminal.map_table(built))
    shown = out.getvalue()
    assert "\x1b[2J" not in shown and "\x9b" not in shown and "[red]boom[/]" in shown


# ------------------------------------------------------------------------------ the bootstraps, made faster


def test_the_band_of_a_curve_equals_scipys_trimmed_means() -> None:
    """The learning curves' bands: the resampled trimmed means sorted instead of partitioned
    (equal within rounding); with NaN (a partial study) scipy's own path."""
    rng = np.random.default_rng(4)
    for runs, points in ((50, 73), (7, 20), (2, 5), (12, 100)):
        values = rng.normal(5, 3, (runs, points))
        values[:, :3] = np.round(values[:, :3])  # ties
        index = np.random.default_rng(0).integers(0, runs, (plots.BAND_RESAMPLES, runs))
        direct = scipy_stats.trim_mean(values[index], 0.25, axis=1)
        centre, low, high = plots.iqm_band(values)
        np.testing.assert_allclose(plots._trimmed_means(values, index), direct, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.stack([low, high]), np.quantile(direct, [0.025, 0.975], axis=0), rtol=1e-12)
        np.testing.assert_array_equal(centre, scipy_stats.trim_mean(values, 0.25, axis=0))
    partial = rng.normal(size=(6, 10))
    partial[0, 5:] = np.nan
    _, low, _ = plots.iqm_band(partial)
    assert np.isfinite(low[:5]).all()


def test_the_interval_of_the_probability_of_improvement_equals_comparing_every_pair() -> None:
    rng = np.random.default_rng(1)
    for trial in range(30):
        x = rng.integers(0, 4, rng.integers(2, 25)).astype(float)  # many ties
        y = rng.normal(1.5, 1, rng.integers(2, 25)) if trial % 2 else rng.integers(0, 4, 9).astype(float)
        draw = np.random.default_rng(trial)
        a = x[draw.integers(0, len(x), (stats.RESAMPLES, len(x)))][:, :, None]
        b = y[draw.integers(0, len(y), (stats.RESAMPLES, len(y)))][:, None, :]
        pairs = ((a > b).sum(axis=(1, 2)) + 0.5 * (a == b).sum(axis=(1, 2))) / (len(x) * len(y))
        expected = np.quantile(pairs, [(1 - stats.CONFIDENCE) / 2, (1 + stats.CONFIDENCE) / 2])
        assert stats.probability_of_improvement_interval(x, y, seed=trial) == tuple(expected)  # exact


# ------------------------------------------------------------------------------ a real study with factors


@pytest.fixture(scope="module")
def two_cell_study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """test_study's factor spec cut to two cells (board 5 and 6), run and reported."""
    from test_study import FACTOR_SPEC

    from regspeed.report import report
    from regspeed.study import runner
    from regspeed.study import spec as spec_module

    text_ = FACTOR_SPEC.replace("network.hidden = [[8], [16]]\n", "")
    folder = tmp_path_factory.mktemp("two-cells")
    outcome = runner.run(spec_module.parse(text_), folder, text_)
    assert outcome.runs_total == 12 and outcome.runs_failed == 0
    report.write(folder)
    return folder


@pytest.mark.slow
def test_a_study_with_factors_is_reported_as_a_map(two_cell_study: Path) -> None:
    from regspeed.report import report

    written = report.write(two_cell_study)
    assert isinstance(written.analysis, factors.MapAnalysis) and isinstance(written.model, model.MapModel)
    assert [cell.label for cell in written.analysis.cells] == ["board=5", "board=6"]
    page = written.html_path.read_text()
    summary = written.markdown_path.read_text()
    assert page.count("<details><summary>board=") == 2 and "## Multiple comparisons" in summary
    assert "| cell | L2 1e-3 | L2 1e-2 |" in summary and "### board=6:" in summary
    assert report.answer(written.analysis) == written.model.answer
    shown = _shown(written.table)
    assert "board=5" in shown and max(len(line) for line in shown.splitlines()) <= 100


@pytest.mark.slow
def test_the_map_report_in_headless_chromium(two_cell_study: Path, tmp_path: Path) -> None:
    """At 1280 x 800: the answer and the verdict map are visible without scrolling, nothing
    overflows horizontally, every image decodes."""
    check_layout_in_chromium(two_cell_study / "report.html", tmp_path)


def test_a_cell_of_a_world_with_levels_shows_its_fitting_vs_generalization(built: model.MapModel) -> None:
    """A map of cells with levels: each cell's section has its training vs held-out table."""
    import dataclasses

    table = model.TextTable(["condition", "training levels"], [["baseline", "9.4"]], None)
    with_levels = dataclasses.replace(built.cells[0].report, generalization=table, generalization_note="gap 3")
    levels_map = dataclasses.replace(built, cells=[dataclasses.replace(built.cells[0], report=with_levels),
                                                   *built.cells[1:]])  # fmt: skip
    page, summary = html.render_map(levels_map), markdown.render_map(levels_map)
    first, second = page.split("<summary>board=")[1:3]
    assert "<h4>Fitting vs generalization</h4><p>gap 3</p>" in first and "Fitting vs" not in second
    assert "#### Fitting vs generalization" in summary and summary.count("Fitting vs generalization") == 1
    assert "Fitting vs generalization" not in html.render_map(built)
