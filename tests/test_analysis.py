"""Learning-speed metrics and statistics: hand-computed cases and synthetic data with known
answers; the report on a real (tiny) study, opened in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from regspeed.analysis import metrics, stats

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
    expected = steps[np.argmax(smoothed >= 10.0)]
    np.testing.assert_array_equal(result.reached, [True, False])
    np.testing.assert_array_equal(result.steps, [expected, 1000.0])  # never reached: censored at the budget


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


def _simulated_times(rng: np.random.Generator, runs: int, speedup: float, budget: float) -> tuple:
    times = rng.lognormal(np.log(200_000), 0.35, runs) / speedup
    return np.minimum(times, budget), times <= budget


def test_identical_conditions_are_called_different_at_about_the_nominal_rate() -> None:
    rng = np.random.default_rng(7)
    studies, calls = 400, 0
    for _ in range(studies):
        a, b = _simulated_times(rng, 10, 1.0, 400_000), _simulated_times(rng, 10, 1.0, 400_000)
        p = stats.logrank_p(*a, *b)
        calls += stats.verdict(p, True) != "no detectable difference"
    assert 0.02 <= calls / studies <= 0.085


def test_a_planted_speedup_of_one_and_a_half_is_found() -> None:
    rng = np.random.default_rng(3)
    found = 0
    for _ in range(50):
        base, fast = _simulated_times(rng, 20, 1.0, 400_000), _simulated_times(rng, 20, 1.5, 400_000)
        p = stats.logrank_p(*fast, *base)
        faster = stats.restricted_mean_time(*fast, 400_000) < stats.restricted_mean_time(*base, 400_000)
        found += stats.verdict(p, faster) == "faster"
    assert found >= 40
    ratio = stats.speedup(*base, *fast)
    low, high = stats.speedup_interval(*base, *fast)
    assert low <= ratio <= high and 1.1 < ratio < 2.2


def test_power_grows_with_the_speedup_and_seeds_needed_are_enough() -> None:
    rng = np.random.default_rng(5)
    times, reached = _simulated_times(rng, 10, 1.0, 400_000)
    assert stats.power(times, reached, 1.05, 10, 0.05) < stats.power(times, reached, 2.0, 10, 0.05)
    statement = stats.power_statement(times, reached, 0.05)
    assert statement.seeds == 10 and statement.detectable_speedup in stats.SPEEDUP_GRID
    needed = statement.seeds_for[1.2]
    assert needed > 0 and stats.power(times, reached, 1.2, needed, 0.05) >= stats.POWER


# ------------------------------------------------------------------------------ report


@pytest.fixture(scope="module")
def reported_study(tiny_study: Path) -> Path:
    """The shared tiny study, reported."""
    from regspeed.report import report

    report.write(tiny_study)
    return tiny_study


def test_report_says_the_answer_and_embeds_every_figure(reported_study: Path) -> None:
    page = (reported_study / "report.html").read_text()
    summary = (reported_study / "summary.md").read_text()
    assert "Does L1/L2 regularization make a neural network learn faster?" in page
    for name in ("l2@0.001", "l2@0.01"):
        assert name in summary and name in page
    assert "after Holm correction" in summary and "regspeed study spec.toml" in summary
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


def test_report_in_headless_chromium_shows_every_figure_without_console_errors(
    reported_study: Path, tmp_path: Path
) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "make test installs Debian's chromium; run `make test`"
    page = reported_study / "report.html"
    # Every image must have decoded (naturalWidth > 0); the page writes the outcome into its title.
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.read_text().replace(
            "</body>",
            "<script>window.addEventListener('load', () => { const images = [...document.images];"
            " const broken = images.filter(i => !i.complete || i.naturalWidth === 0).length;"
            " document.title = `images=${images.length} broken=${broken}`; });</script></body>",
        )
    )
    result = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    title = result.stdout.split("<title>")[1].split("</title>")[0]
    images = page.read_text().count("<img ")
    assert title == f"images={images} broken=0"
    console_errors = [line for line in result.stderr.splitlines() if "CONSOLE" in line and "ERROR" in line.upper()]
    assert not console_errors, console_errors


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
