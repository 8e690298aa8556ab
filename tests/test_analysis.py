"""Learning-speed metrics and statistics: hand-computed cases and synthetic data with known
answers; the analysis and the progress table from arrays alone; the report's renderers on
a model written by hand; the report on a real (tiny) study, opened in headless Chromium;
and the layers importing only downward."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from regspeed.analysis import compare, metrics, progress, stats
from regspeed.errors import ConfigError
from regspeed.study.results import Condition, ConditionCurves, Run, StudyData

# ------------------------------------------------------------------------------ metrics


def test_smoothing_is_a_trailing_mean_that_skips_missing_points() -> None:
    values = np.array([[np.nan, 2.0, 4.0, np.nan, 8.0]])
    np.testing.assert_allclose(metrics.smooth(values, 2), [[np.nan, 2.0, 3.0, 4.0, 8.0]])


def test_steps_to_threshold_and_censoring() -> None:
    steps = np.arange(1, 101) * 10.0
    rising = np.linspace(0, 20, 100)  # crosses 10 between points
    flat = np.full(100, 3.0)
    result = metrics.steps_to_threshold(steps, np.stack([rising, flat]), threshold=10.0, budget=1000)
    window = metrics.smoothing_window(100)
    smoothed = metrics.smooth(rising[None], window)[0]
    after = np.argmax(smoothed >= 10.0)  # interpolated between the points either side of the crossing
    fraction = (10.0 - smoothed[after - 1]) / (smoothed[after] - smoothed[after - 1])
    expected = steps[after - 1] + fraction * (steps[after] - steps[after - 1])
    assert steps[after - 1] < expected < steps[after]
    np.testing.assert_array_equal(result.reached, [True, False])
    np.testing.assert_allclose(result.steps, [expected, 1000.0])  # never reached: censored at the budget
    # a curve already above the threshold at its first point reaches it there
    assert metrics.steps_to_threshold(steps, np.full((1, 100), 11.0), 10.0, 1000).steps[0] == 10.0


def test_area_under_curve_and_final_performance_by_hand() -> None:
    steps = np.array([250.0, 500.0, 750.0, 1000.0])
    values = np.array([[1.0, 3.0, np.nan, 5.0]])
    # points (0,1) (250,1) (500,3) (1000,5): 250*1 + 250*2 + 500*4 = 2750 over 1000
    np.testing.assert_allclose(metrics.area_under_curve(steps, values, 1000), [2.75])
    np.testing.assert_allclose(metrics.final_performance(steps, values, 1000), [5.0])
    assert metrics.auto_thresholds(20.0) == [5.0, 10.0, 15.0]


# --------------------------------------------------------------------------- statistics


def test_iqm_probability_of_improvement_and_holm_by_hand() -> None:
    assert stats.iqm(np.array([1, 2, 3, 4, 5, 6, 7, 100.0])) == pytest.approx(4.5)  # middle half: 3,4,5,6
    assert stats.probability_of_improvement([1, 2, 3], [1, 1, 1]) == pytest.approx((0.5 + 1 + 1) / 3)
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, 0.5]), [0.04, 0.09, 0.09, 0.5])
    low, high = stats.iqm_interval(np.arange(20.0))
    assert low < stats.iqm(np.arange(20.0)) < high


def test_kaplan_meier_equals_scipy_and_median_is_by_hand() -> None:
    times = np.array([10.0, 20.0, 20.0, 30.0, 40.0, 50.0])
    reached = np.array([True, True, False, True, False, True])
    ours = stats.kaplan_meier(times, reached)
    theirs = scipy_stats.ecdf(scipy_stats.CensoredData(uncensored=times[reached], right=times[~reached])).sf
    ours_at_theirs = ours.not_reached[np.searchsorted(ours.steps, theirs.quantiles, side="right") - 1]
    np.testing.assert_allclose(ours_at_theirs, theirs.probabilities)  # scipy also lists censoring times
    # S(10) = 5/6, S(20) = 5/6 * 4/5 = 2/3, S(30) = 2/3 * 2/3 = 4/9 <= 1/2: the median is 30
    assert stats.median_time(times, reached) == 30.0
    assert stats.median_time(times, np.zeros(6, bool)) == np.inf


def test_median_is_the_first_time_half_have_reached_despite_rounding() -> None:
    # 1 - 1/10, ... multiplied out lands on 0.5000000000000001 at the fifth event
    times = np.array([8192, 16384, 16384, 24576, 32768, 40960, 40960, 40960, 40960, 40960.0])
    reached = np.array([True] * 5 + [False] * 5)
    assert stats.median_time(times, reached) == 32768.0


def _paired_times(rng: np.random.Generator, runs: int, speedup: float, budget: float, rho: float = 0.6) -> tuple:
    """Seed-paired log-normal times (correlation ``rho`` of the logs), censored at ``budget``."""
    z = rng.standard_normal(runs)
    base = np.exp(np.log(200_000) + 0.3 * z)
    other = np.exp(np.log(200_000 / speedup) + 0.3 * (rho * z + np.sqrt(1 - rho**2) * rng.standard_normal(runs)))
    return (np.minimum(base, budget), base <= budget), (np.minimum(other, budget), other <= budget)


def test_identical_conditions_are_called_different_at_most_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(7)
    studies, called = 1000, 0
    for _ in range(studies):
        base, other = _paired_times(rng, 10, 1.0, 400_000)
        test = stats.paired_test(stats.paired_ratios(*base, *other), margin=1.1)
        called += stats.verdict(test.p_difference, test.faster_direction, 1.0) != "inconclusive"
    assert called / studies <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / studies)


def test_a_planted_speedup_of_one_and_a_half_is_found_with_its_size() -> None:
    rng = np.random.default_rng(3)
    found, covered = 0, 0
    for _ in range(50):
        base, fast = _paired_times(rng, 10, 1.5, 400_000)
        test = stats.paired_test(stats.paired_ratios(*base, *fast), margin=1.1)
        found += stats.verdict(test.p_difference, test.faster_direction, test.p_equivalence) == "faster"
        covered += test.interval[0] <= np.log(1.5) <= test.interval[1]
    assert found >= 45 and covered >= 45
    assert 1.2 < test.speedup < 1.9 and test.interval[0] < np.log(test.speedup) < test.interval[1]


def test_paired_ratios_restrict_a_pair_to_its_observation_and_bound_the_truth() -> None:
    base_times, base_reached = np.array([100.0, 100.0, 300.0, 300.0]), np.array([True, True, False, True])
    times, reached = np.array([50.0, 200.0, 150.0, 120.0]), np.array([True, False, True, False])
    ratios = stats.paired_ratios(base_times, base_reached, times, reached)
    # pair 2: the condition stopped being observed at 200, the baseline reached at 100: log(100/200)
    # pair 3: the baseline was observed to 300 without reaching, the condition reached at 150: log(300/150)
    # pair 4: the condition was observed to 120 only; the baseline reached at 300, after that: both at 120
    np.testing.assert_allclose(ratios.observed, np.log([100 / 50, 100 / 200, 300 / 150, 1.0]))
    np.testing.assert_allclose(ratios.low, [np.log(2), -np.inf, np.log(2), -np.inf])
    np.testing.assert_allclose(ratios.high, [np.log(2), np.log(0.5), np.inf, np.log(300 / 120)])


def test_power_grows_with_the_speedup_and_the_seeds_needed_are_enough() -> None:
    model = stats.TimeModel(log_mean=np.log(200_000), log_sd=0.3, pair_sd=0.25, budget=1_000_000)
    assert stats.power(model, 1.05, 10, 0.05) < stats.power(model, 1.3, 10, 0.05) < stats.power(model, 1.3, 20, 0.05)
    statement = stats.power_statement(model, 10, 0.05)
    assert statement.seeds == 10 and statement.detectable_speedup in stats.SPEEDUP_GRID
    needed = statement.seeds_for[1.2]
    assert needed > 10 and stats.power(model, 1.2, needed, 0.05) >= stats.POWER
    assert stats.power(model, statement.detectable_speedup, 10, 0.05) >= stats.POWER


# ------------------------------------------------------------------- analysis from arrays

BUDGET = 10_000
STEPS = np.arange(1, 101) * 100  # a point every 100 steps up to the budget


def _rising(times_to_one: np.ndarray) -> np.ndarray:
    """Curves ``[runs, points]`` rising linearly from 0, reaching 1 at each run's time."""
    return STEPS[None, :] / np.asarray(times_to_one, float)[:, None]


def _study(runs: dict[str, tuple[np.ndarray, list[Run]]], cosine: dict[str, float]) -> StudyData:
    """A study as data, no store: per condition its score curves and its runs."""
    conditions = [
        Condition(name, "none" if name == "none" else "l2", 0.0 if name == "none" else 0.01, {}) for name in runs
    ]
    seeds = {name: [run.seed for run in members] for name, (_, members) in runs.items()}
    score = [ConditionCurves(name, seeds[name], STEPS, values) for name, (values, _) in runs.items()]
    cosines = [
        ConditionCurves(name, seeds[name], STEPS, np.full((len(seeds[name]), len(STEPS)), cosine.get(name, np.nan)))
        for name in runs
    ]
    return StudyData(
        name="synthetic",
        task="made-up",
        budget_steps=BUDGET,
        step_unit="updates",
        speed_metrics=("score",),
        thresholds={"score": [1.0]},
        margin=1.1,
        looks=(max(len(members) for _, members in runs.values()),),
        conditions=conditions,
        runs=[run for _, members in runs.values() for run in members],
        curves={"score": score, "grad_cosine": cosines},
        wall_seconds=60.0,
        versions={},
        spec_toml="",
        metric_labels={"score": "the score"},
        watchable=False,
        progress_metric="score",
    )


def named_study(times: dict[str, np.ndarray]) -> StudyData:
    """A study as data whose conditions are named as a spec names them (``none``,
    ``l2@0.001``: kind and strength from the name), each run's score reaching 1 at its time."""
    data = _study({name: (_rising(t), _finished(name, len(t))) for name, t in times.items()}, {})
    named = [
        dataclasses.replace(c, kind=c.name.split("@")[0], strength=float(c.name.split("@")[1]) if "@" in c.name else 0)
        for c in data.conditions
    ]
    return dataclasses.replace(data, conditions=named)


def _finished(condition: str, count: int) -> list[Run]:
    return [Run(condition, seed, "finished", 1.0, None) for seed in range(count)]


def _synthetic_study() -> StudyData:
    rng = np.random.default_rng(11)
    base_times = rng.uniform(5_000, 7_000, 12)
    partial_values = _rising([5_000, 2_050, 9_050])
    partial_values[:2, 30:] = np.nan  # one run running, one failed: nothing recorded after 30% of the budget
    partial_runs = [
        Run("partial", 0, "running", 0.3, None),
        Run("partial", 1, "failed", 0.3, "loss became nan at update 30"),
        Run("partial", 2, "finished", 1.0, None),
    ]
    return _study(
        {
            "none": (_rising(base_times), _finished("none", 12)),
            "fast": (_rising(base_times / 2), _finished("fast", 12)),
            "same": (_rising(base_times * rng.uniform(0.99, 1.01, 12)), _finished("same", 12)),
            "shuffled": (_rising(rng.permutation(base_times)), _finished("shuffled", 12)),
            "partial": (partial_values, partial_runs),
        },
        cosine={"fast": -0.5, "same": 0.25},
    )


def test_analysis_from_arrays_finds_a_planted_speedup_and_no_difference_where_there_is_none() -> None:
    analysis = compare.analyze(_synthetic_study())
    assert analysis.thresholds == {"score": [1.0]} and analysis.seeds == 12
    assert analysis.primary["fast"].verdict == "faster"
    assert analysis.primary["fast"].speedup.value == pytest.approx(2.0, rel=0.1)
    assert analysis.primary["fast"].test == compare.PAIRED and analysis.primary["fast"].pairs == 12
    # within 1% of the baseline seed by seed: shown to be within the 1.1x margin
    assert analysis.primary["same"].verdict == "equivalent"
    # the same times on other seeds: pairs differ by up to 40% either way, so neither is shown
    assert analysis.primary["shuffled"].verdict == "inconclusive"
    assert [(o.condition, o.mean_cosine, o.opposing_share) for o in analysis.opposition] == [
        ("fast", -0.5, 1.0),
        ("same", 0.25, 0.0),
    ]
    assert analysis.label("score") == "the score" and analysis.label("steps") == "steps"


def test_a_condition_sharing_no_seed_with_the_baseline_gets_the_unpaired_test() -> None:
    base_times = np.random.default_rng(5).uniform(5_000, 7_000, 12)
    elsewhere = [Run("elsewhere", 100 + seed, "finished", 1.0, None) for seed in range(12)]
    data = _study(
        {"none": (_rising(base_times), _finished("none", 12)), "elsewhere": (_rising(base_times / 2), elsewhere)}, {}
    )
    comparison = compare.analyze(data).primary["elsewhere"]
    assert (comparison.test, comparison.pairs, comparison.verdict) == (compare.UNPAIRED, 0, "faster")
    assert comparison.p_equivalence == 1.0  # no equivalence test without pairs
    assert comparison.speedup.value == pytest.approx(2.0, rel=0.1)


def test_unfinished_and_failed_runs_are_censored_where_their_record_stops() -> None:
    analysis = compare.analyze(_synthetic_study())
    assert analysis.incomplete == ["partial"]
    assert analysis.failed_runs == [("partial", 1, "loss became nan at update 30")]
    times = analysis.times[0].times["partial"]
    # the running run had not reached 1 when its record stopped at 30% of the budget: censored there, not
    # at the budget; the failed run reached it before failing. Smoothed over 5 points (a trailing mean of a
    # line), a run reaching 1 at step t is credited at t + 200: 2,250 and 9,250.
    np.testing.assert_array_equal(times.reached, [False, True, True])
    np.testing.assert_allclose(times.steps, [0.3 * BUDGET, 2_250, 9_250])


def test_progress_table_and_best_seed_from_arrays() -> None:
    data = _synthetic_study()
    rows = {row.condition: row for row in progress.table(data)}
    assert (rows["none"].runs, rows["none"].finished, rows["none"].failed, rows["none"].progress) == (12, 12, 0, 1.0)
    partial = rows["partial"]
    assert (partial.finished, partial.failed) == (1, 1) and partial.progress == pytest.approx((0.3 + 0.3 + 1) / 3)
    # final performance: the mean over the last 10% of the budget; only the finished run has points there
    expected = STEPS[STEPS > 0.9 * BUDGET].mean() / 9_050
    assert partial.final["score"] == pytest.approx(expected)
    fast = data.curves_of("score")["fast"]
    finals = fast.values[:, -10:].mean(axis=1)
    assert progress.best_seed(data, "fast") == fast.seeds[int(np.argmax(finals))]
    with pytest.raises(ConfigError, match=r"no condition 'l9@1'; choose one of none, fast, same, shuffled, partial"):
        progress.best_seed(data, "l9@1")
    assert progress.best_seed(data, "fast", "eval_score") == 0  # not recorded: the first seed


# ------------------------------------------------------------------------------ report


@pytest.fixture(scope="module")
def reported_study(tiny_study: Path) -> Path:
    """The shared tiny study, reported."""
    from regspeed.report import report

    report.write(tiny_study)
    return tiny_study


@pytest.mark.slow
def test_report_says_the_answer_and_embeds_every_figure(reported_study: Path) -> None:
    page = (reported_study / "report.html").read_text()
    summary = (reported_study / "summary.md").read_text()
    assert "Does L1/L2 regularization make a neural network learn faster?" in page
    for name in ("l2@0.001", "l2@0.01"):
        assert name in summary and name in page
    assert "Holm-corrected over the 2 conditions" in summary and "regspeed study spec.toml" in summary
    assert page.index("class='answer'") < page.index("The answer in one picture") < page.index("Learning curves")
    assert page.index("<h2>Verdicts</h2>") < page.index("<details><summary>Every comparison")
    assert page.count("data:image/png;base64,") >= 6
    assert page.count("data:image/gif;base64,") == 2  # best runs of the baseline and of l2
    assert "http://" not in page and "https://" not in page  # self-contained


def test_report_of_a_missing_study_is_a_clear_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from regspeed.cli import app

    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "holds no study" in result.output
    (tmp_path / "study.sqlite").write_text("not a database")
    damaged = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert damaged.exit_code == 2 and "damaged" in damaged.output


@pytest.mark.slow
def test_report_in_headless_chromium_shows_every_figure_without_console_errors(
    reported_study: Path, tmp_path: Path
) -> None:
    """At 1280 x 800: the answer and the summary figure are visible without scrolling,
    nothing overflows horizontally, every image decodes, no console errors; a screenshot is
    kept (pytest's temporary folder) for the record."""
    page = reported_study / "report.html"
    common, result = check_layout_in_chromium(page, tmp_path)
    console_errors = [line for line in result.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line.upper()]
    assert not console_errors, console_errors
    screenshot = tmp_path / "report-1280x800.png"
    subprocess.run([*common, f"--screenshot={screenshot}", page.as_uri()], capture_output=True, timeout=120)
    assert screenshot.stat().st_size > 10_000


def check_layout_in_chromium(page: Path, tmp_path: Path) -> tuple[list[str], subprocess.CompletedProcess]:
    """Open a report in headless Chromium at 1280 x 800 and check that the answer and the
    first figure are visible without scrolling, nothing overflows horizontally and every
    image decodes; the browser's command line and its run (for its console output)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "make test installs Debian's chromium; run `make test`"
    # The page measures itself once loaded and writes the outcome into its title.
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.read_text().replace(
            "</body>",
            "<script>window.addEventListener('load', () => { const images = [...document.images];"
            " const broken = images.filter(i => !i.complete || i.naturalWidth === 0).length;"
            " const bottom = e => Math.ceil(e.getBoundingClientRect().bottom);"
            " const root = document.documentElement;"
            " document.title = `images=${images.length} broken=${broken} height=${window.innerHeight}"
            " answer=${bottom(document.getElementById('answer'))} figure=${bottom(images[0])}"
            " overflow=${root.scrollWidth - root.clientWidth}`; });</script></body>",
        )
    )
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,800"]
    result = subprocess.run(
        [*common, "--enable-logging=stderr", "--v=0", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    title = result.stdout.split("<title>")[1].split("</title>")[0]
    found = dict(item.split("=") for item in title.split())
    assert int(found["images"]) == page.read_text().count("<img ") and found["broken"] == "0", title
    # the viewport of a 1280 x 800 headless window is a little shorter (713 px here): stricter
    assert int(found["answer"]) < int(found["figure"]) <= int(found["height"]) <= 800, title
    assert found["overflow"] == "0", title
    return common, result


@pytest.mark.slow
def test_watch_writes_a_gif_of_a_trained_run_and_names_bad_options(reported_study: Path, tmp_path: Path) -> None:
    from PIL import Image
    from typer.testing import CliRunner

    from regspeed.cli import app

    cli = CliRunner()
    gif = tmp_path / "run.gif"
    result = cli.invoke(app, ["watch", str(reported_study), "--condition", "l2@0.01", "--seed", "1", "--gif", str(gif)])
    assert result.exit_code == 0, result.output
    assert "l2@0.01 seed 1:" in result.output
    with Image.open(gif) as image:
        assert image.format == "GIF" and image.n_frames >= 2
    unknown = cli.invoke(app, ["watch", str(reported_study), "--condition", "l9@1"])
    assert unknown.exit_code == 2 and "condition: no condition 'l9@1'; choose one of none, l2@0.001, l2@0.01" in (
        unknown.output
    )
    no_seed = cli.invoke(app, ["watch", str(reported_study), "--seed", "7"])
    assert no_seed.exit_code == 2 and "seed: none has no seed 7; its seeds are [0, 1]" in no_seed.output


# ------------------------------------------------------------------------------ renderers


def _model(per_metric: bool, animations: bool) -> object:
    from regspeed.report.model import Animation, Figure, ReportModel, TextTable

    return ReportModel(
        question="Q?",
        study="hand-made",
        answer="The answer.",
        findings=["first finding", "second finding"],
        setup=["a setup line"],
        verdict_title="time to score 1 vs baseline",
        verdicts=TextTable(["condition", "verdict"], [["none", "baseline"], ["l2@0.01", "faster"]], 1),
        per_metric=TextTable(["condition", "score 1", "steps 5"], [["l2@0.01", "faster: 2x", "slower"]], None)
        if per_metric
        else None,
        comparisons=TextTable(["condition", "metric", "verdict"], [["l2@0.01", "score", "slower"]], 2),
        figures=[Figure("A figure", "its caption", b"png bytes")],
        animations=[Animation("l2@0.01 (seed 1)", "greedy policy", b"gif bytes")] if animations else [],
        caveats=["a caveat <with markup>"],
        spec_toml='name = "hand-made"',
    )


def test_markdown_renders_the_model_in_order_and_leaves_out_what_it_lacks() -> None:
    from regspeed.report import markdown

    text = markdown.render(_model(per_metric=False, animations=False))
    lines = text.splitlines()
    assert lines[:13] == [
        "# Q?",
        "",
        "## Answer (hand-made)",
        "",
        "The answer.",
        "",
        "## Verdicts: time to score 1 vs baseline",
        "",
        "| condition | verdict |",
        "|---|---|",
        "| none | baseline |",
        "| l2@0.01 | faster |",
        "",
    ]
    findings = lines.index("## How each verdict was reached")
    assert lines[findings + 2 : findings + 4] == ["- first finding", "- second finding"]
    assert "## Each metric side by side" not in lines
    assert text.endswith('```toml\nname = "hand-made"\n```\n')
    with_metrics = markdown.render(_model(per_metric=True, animations=False))
    assert "## Each metric side by side\n\n| condition | score 1 | steps 5 |\n|---|---|---|\n" in with_metrics


def test_html_marks_verdict_cells_embeds_the_evidence_and_escapes_text() -> None:
    import base64

    from regspeed.report import html

    page = html.render(_model(per_metric=True, animations=True))
    assert "<td class='faster'>faster</td>" in page and "<td class='slower'>slower</td>" in page
    assert "<td>faster: 2x</td>" in page  # the per-metric table has no verdict column
    assert f"data:image/png;base64,{base64.b64encode(b'png bytes').decode()}" in page
    assert f"data:image/gif;base64,{base64.b64encode(b'gif bytes').decode()}" in page
    assert "<li>a caveat &lt;with markup&gt;</li>" in page
    quiet = html.render(_model(per_metric=False, animations=False))
    assert "Watching the snake" not in quiet and "Each metric side by side" not in quiet


def test_terminal_table_colours_the_verdicts() -> None:
    from regspeed.report import terminal

    table = terminal.verdict_table(_model(per_metric=False, animations=False))
    assert table.title == "time to score 1 vs baseline"
    assert [column.header for column in table.columns] == ["condition", "verdict"]
    assert list(table.columns[1].cells) == ["baseline", "[green]faster[/]"]


def test_failed_and_frozen_runs_show_in_the_verdict_row() -> None:
    """A condition whose runs all diverged, or whose weights never moved, is not reported as
    an ordinary "inconclusive" with every run reaching the threshold."""
    from regspeed.report import text

    rng = np.random.default_rng(3)
    base_times = rng.uniform(5_000, 7_000, 4)
    moving = STEPS[None, :] * np.ones((4, 1))  # a weight norm that changes
    frozen = np.full((4, len(STEPS)), 7.5)  # the same at every point
    failed_runs = [Run("diverged", seed, "failed", 0.5, "policy_loss became nan") for seed in range(4)]
    data = _study(
        {
            "none": (_rising(base_times), _finished("none", 4)),
            "diverged": (_rising(base_times), failed_runs),
            "stuck": (_rising(base_times), _finished("stuck", 4)),
        },
        cosine={},
    )
    weights = {"none": moving, "diverged": moving, "stuck": frozen}
    curves = {**data.curves, "weight_l2": [ConditionCurves(n, list(range(4)), STEPS, v) for n, v in weights.items()]}
    analysis = compare.analyze(dataclasses.replace(data, curves=curves))
    assert analysis.health["none"] == compare.RunHealth(4, 0, 0)
    assert analysis.health["diverged"] == compare.RunHealth(4, 4, 0)
    assert analysis.health["stuck"] == compare.RunHealth(4, 0, 4)
    rows = {row[0]: row for row in text.verdict_rows(analysis)}
    assert rows["diverged"][1] == "all runs failed" and rows["diverged"][4].endswith("/4 (4 failed)")
    assert rows["stuck"][1] == "all runs frozen" and rows["stuck"][4] == "4/4 (4 frozen)"


def test_the_answer_reads_as_plain_sentences_with_people_names() -> None:
    from regspeed.report import text

    rng = np.random.default_rng(8)
    base = rng.uniform(3_000, 4_000, 12)
    never = np.full(12, 1e9)  # rises so slowly that it never reaches the threshold
    runs = {
        "none": base,
        "l1@1e-05": base * rng.uniform(0.99, 1.01, 12),
        "l1@0.0001": base * 1.5,
        "l1@0.001": never,
        "l2@0.001": base / 2,
    }
    analysis = compare.analyze(named_study(runs))
    assert [text.people_name(c) for c in analysis.conditions] == [
        "baseline",
        "L1 1e-5",
        "L1 1e-4",
        "L1 1e-3",
        "L2 1e-3",
    ]
    # times to threshold lag the curves by the smoothing window (200 steps): 2x comes out 1.9x, 1.5x 47%
    assert text.answer(analysis) == (
        "L2 1e-3 made the network learn faster (up to 1.9x as fast). "
        "L1 from 1e-4 made it slower: up to 47% more updates, or it never got there. "
        "L1 1e-5 changed the time by less than 10%. "
        "Learning speed here is the updates a run needs to reach a the score of 1."
    )


def test_a_run_at_its_threshold_from_the_first_point_gives_finite_ratios() -> None:
    # time 0 (reached at the first evaluation) counts as one step: no log(0), no NaN ranks
    ratios = stats.paired_ratios(
        np.array([0.0, 0.0, 5.0]), np.ones(3, bool), np.array([0.0, 3.0, 0.0]), np.ones(3, bool)
    )
    np.testing.assert_allclose(ratios.observed, [0.0, -np.log(3.0), np.log(5.0)])
    assert np.isfinite(ratios.low).all() and np.isfinite(ratios.high).all()
    assert stats.paired_test(ratios, 1.1).p_difference == 1.0


def test_the_terminal_verdict_table_fits_100_columns_without_breaking_a_cell() -> None:
    import io

    from rich.console import Console

    from regspeed.report import terminal, text
    from regspeed.report.model import TextTable

    long_rows = [
        ["weight decay (policy) 1e-2", "inconclusive", "0.98x [0.96, 1.01]", "0.0088", "10/10 (2 failed)",
         "19.2 [19, 19.3]", "0.37 [0.13, 0.64]"],
        ["L1 1e-3 (incomplete)", "slower", "never reached", "0.018", "0/10", "0.0493 [0.034, 0.0732]", "0 [0, 0]"],
    ]  # fmt: skip
    model = dataclasses.replace(_model(False, False), verdicts=TextTable(text.VERDICT_HEADER, long_rows, 1))
    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(terminal.verdict_table(model))
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 100 and "…" not in out.getvalue()
    assert sum("weight decay (policy) 1e-2" in line for line in lines) == 1  # one line per row
    assert sum("0.98x [0.96, 1.01]" in line for line in lines) == 1


# ------------------------------------------------------------------------------ levels: fitting vs generalization


def _levels_data(gap_changes: dict[str, float], seeds: int = 10, noise: float = 0.05) -> object:
    """Level curves of a baseline (gap 1.0) and conditions whose gap differs by a known amount;
    every run's held-out score has seed noise shared across conditions (common random numbers)."""
    from regspeed.study import results

    rng = np.random.default_rng(0)
    steps = np.arange(100, 1001, 100)
    shared = rng.normal(0, 0.3, size=(seeds, 1))
    curves: dict[str, list] = {"train_levels_score": [], "test_levels_score": [], "levels_gap": []}
    conditions, runs = [], []
    for name, change in {"none": 0.0, **gap_changes}.items():
        train = 3.0 + shared + rng.normal(0, noise, size=(seeds, len(steps)))
        gap = 1.0 + change + rng.normal(0, noise, size=(seeds, len(steps)))
        for metric, values in (("train_levels_score", train), ("test_levels_score", train - gap), ("levels_gap", gap)):
            curves[metric].append(results.ConditionCurves(name, list(range(seeds)), steps, values))
        conditions.append(results.Condition(name, name.split("@")[0], 0.0 if name == "none" else 0.01, {}))
        runs += [results.Run(name, seed, "finished", 1.0, None) for seed in range(seeds)]
    return results.StudyData(
        name="levels", task="snake-ppo", budget_steps=1000, step_unit="env steps",
        speed_metrics=("train_levels_score", "test_levels_score"), thresholds={}, margin=1.1, looks=(seeds,),
        conditions=conditions, runs=runs, curves=curves, wall_seconds=1.0, versions={}, spec_toml="",
        metric_labels={}, watchable=False, progress_metric="train_levels_score",
    )  # fmt: skip


def test_generalization_finds_a_known_narrower_gap_and_not_an_unchanged_one() -> None:
    """A condition whose gap is 0.5 smaller is found narrower (Holm p < 0.05, its change's
    interval around -0.5); one with the same gap is not; the baseline is first, uncompared."""
    from regspeed.analysis import compare
    from regspeed.report import text

    data = _levels_data({"l2@0.01": -0.5, "l1@0.01": 0.0})
    rows = compare.generalization(data)
    assert [row.condition for row in rows] == ["none", "l2@0.01", "l1@0.01"]
    base, narrower, same = rows
    assert base.gap_change is None and base.gap.value == pytest.approx(1.0, abs=0.05)
    assert narrower.p_holm < 0.05 and narrower.gap_change.low < -0.5 < narrower.gap_change.high
    assert same.p_holm > 0.05 and same.gap_change.low < 0 < same.gap_change.high
    assert narrower.test.value - base.test.value == pytest.approx(0.5, abs=0.1)
    analysis = compare.analyze(data)
    assert "narrowed by" in text.generalization_sentence(analysis) and "widened" not in text.generalization_sentence(
        analysis
    )
    assert text.generalization_rows(analysis)[0][4] == "baseline"


def test_generalization_is_empty_without_level_curves() -> None:
    """A study without levels has no fitting-vs-generalization section."""
    from regspeed.analysis import compare
    from regspeed.report import text

    data = _levels_data({"l2@0.01": 0.0})
    without = dataclasses.replace(data, curves={k: v for k, v in data.curves.items() if k != "levels_gap"})
    assert compare.generalization(without) == []
    assert text.generalization_sentence(compare.analyze(without)) is None
