"""Learning speed in a changing world, phase by phase (``analysis/phases.py``) and its report
section: synthetic studies with known answers, no training."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_analysis import named_study

from regspeed.analysis import compare, metrics, phases
from regspeed.report import evidence, html, markdown, model, text
from regspeed.study.results import Condition, ConditionCurves, Run, StudyData

PHASE = 1_000  # budget units per phase
PHASES = 5
SEEDS = 10
STEPS = np.arange(1, PHASES * 100 + 1) * 10.0  # a point every 10 steps: 100 per phase


def _ramps(times: np.ndarray) -> np.ndarray:
    """Curves ``[runs, points]`` that rise linearly from 0 at each phase's start and reach 1
    at the run's time for that phase (``times[runs, phases]``, from the phase's start)."""
    steps = STEPS
    values = np.zeros((times.shape[0], len(steps)))
    for phase in range(times.shape[1]):
        points = (steps > phase * PHASE) & (steps <= (phase + 1) * PHASE)
        values[:, points] = (steps[points] - phase * PHASE)[None, :] / times[:, phase : phase + 1]
    return values


def _study(curves: dict[str, np.ndarray], runs: list[Run] | None = None, phase_steps: int = PHASE) -> StudyData:
    """A changing world's study as data, no store: per condition (``kind@strength`` names) its
    score curves on :data:`STEPS`, every run finished unless ``runs`` says otherwise."""
    conditions = [
        Condition(name, name.split("@")[0], float(name.split("@")[1]) if "@" in name else 0.0, {}) for name in curves
    ]
    seeds = {name: list(range(len(values))) for name, values in curves.items()}
    return StudyData(
        name="changing", task="made-up", budget_steps=PHASES * PHASE, step_unit="env steps",
        speed_metrics=("score",), thresholds={"score": [1.0]}, margin=1.1, looks=(SEEDS,), conditions=conditions,
        runs=runs or [Run(name, seed, "finished", 1.0, None) for name in curves for seed in seeds[name]],
        curves={"score": [ConditionCurves(name, seeds[name], STEPS, values) for name, values in curves.items()]},
        wall_seconds=1.0, versions={}, spec_toml='name = "changing"', metric_labels={"score": "the score"},
        watchable=False, progress_metric="score", phase_steps=phase_steps,
    )  # fmt: skip


def _known() -> StudyData:
    """The baseline's time grows by 120 steps each phase; ``l2@0.01`` learns phase 0 as fast as
    the baseline (within 5%) and every later phase as fast as its first; ``l2@0.001`` is the
    baseline exactly."""
    rng = np.random.default_rng(0)
    first = rng.uniform(300, 500, SEEDS)
    growing = first[:, None] + 120 * np.arange(PHASES)[None, :]
    steady = first[:, None] * rng.uniform(0.95, 1.05, (SEEDS, PHASES))
    return _study({"none": _ramps(growing), "l2@0.01": _ramps(steady), "l2@0.001": _ramps(growing)})


@pytest.fixture(scope="module")
def known() -> compare.StudyAnalysis:
    return compare.analyze(_known())


# ------------------------------------------------------------------------------ analysis


def test_a_condition_that_keeps_its_speed_relearns_faster_though_not_faster_the_first_time(
    known: compare.StudyAnalysis,
) -> None:
    found = known.phases
    assert found is not None and found.count == PHASES and (found.metric, found.threshold) == ("score", 1.0)
    steady = found.of("l2@0.01")
    assert steady.first_vs_baseline.verdict not in ("faster", "slower")  # "not the first time"
    assert steady.relearning_vs_baseline.verdict == "faster"  # "yes, after the world changes"
    # the baseline's mean relearning time is its first time + 120 * 2.5 steps: about 1.75x the steady one's
    assert steady.relearning_vs_baseline.speedup.value == pytest.approx(1.7, rel=0.1)
    assert steady.relearning_vs_baseline.speedup.low > 1 and steady.relearning_vs_baseline.pairs == SEEDS
    assert steady.relearning_reached == (SEEDS * (PHASES - 1), SEEDS * (PHASES - 1))


def test_the_baseline_slows_phase_after_phase_and_the_steady_condition_does_not(known: compare.StudyAnalysis) -> None:
    base, steady = known.phases.conditions[0], known.phases.of("l2@0.01")
    assert base.condition == "none" and base.slope_change is None and base.relearning_vs_baseline is None
    assert base.slope.low > 0  # a positive trend, its interval excluding 0
    assert abs(steady.slope.value) < 0.02 and steady.slope.low < 0 < steady.slope.high
    assert steady.slope_change.high < 0 and steady.slope_p_holm < 0.05
    # per-phase IQM curve: the baseline's times rise by 120 steps a phase
    times = [interval.value for interval in base.times]
    np.testing.assert_allclose(np.diff(times), 120, atol=15)


def test_identical_conditions_are_neither_faster_nor_slower(known: compare.StudyAnalysis) -> None:
    same = known.phases.of("l2@0.001")
    for comparison in (same.first_vs_baseline, same.relearning_vs_baseline):
        assert comparison.verdict == "equivalent" and comparison.speedup.value == pytest.approx(1.0)
    assert same.slope_change.value == 0.0 and same.slope_p_holm == 1.0


def test_a_phase_that_never_reaches_the_threshold_counts_as_its_length() -> None:
    times = np.full((SEEDS, PHASES), 400.0)
    stuck = _ramps(times)
    stuck[:, (STEPS > 2 * PHASE) & (STEPS <= 3 * PHASE)] = 0.5  # phase 2 never gets to 1
    found = phases.analyze(_study({"none": _ramps(times), "l2@0.01": stuck}), "score", 1.0)
    runs = found.runs["l2@0.01"]
    assert not runs.reached[:, 2].any() and runs.known[:, 2].all()
    np.testing.assert_array_equal(runs.times[:, 2], PHASE)  # at the phase's end, not the budget's
    assert runs.reached[:, [0, 1, 3, 4]].all()
    row = found.of("l2@0.01")
    assert row.relearning_reached == (SEEDS * 3, SEEDS * 4) and row.times[2].value == PHASE
    # a phase not relearned counts as its length in the mean: (3 * 420 + 1000) / 4 against 420
    again = row.relearning_vs_baseline
    assert again.verdict == "slower"
    assert again.speedup.value == pytest.approx(420 * 4 / (3 * 420 + 1000), rel=0.02)
    assert 0 < again.speedup.low <= again.speedup.value <= again.speedup.high < 1  # a restricted mean: known exactly


def test_an_unfinished_run_is_censored_where_its_record_stops_and_compared_on_the_phases_both_entered() -> None:
    times = np.full((SEEDS, PHASES), 400.0)
    values = _ramps(times)
    values[0, STEPS > 2.5 * PHASE] = np.nan
    runs = [Run(name, seed, "finished", 1.0, None) for name in ("none", "l2@0.01") for seed in range(SEEDS)]
    runs[SEEDS] = Run("l2@0.01", 0, "running", 0.5, None)  # recorded up to step 2,500, halfway into phase 2
    found = phases.analyze(_study({"none": _ramps(times), "l2@0.01": values}, runs), "score", 1.0)
    first = found.runs["l2@0.01"]
    assert first.reached[0, 2] and first.known[0, 2]  # it reached the threshold before its record stopped
    assert np.isnan(first.times[0, 3:]).all() and not first.known[0, 3:].any()  # phases it never entered
    assert np.isnan(first.auc[0, 2:]).all() and np.isfinite(first.auc[0, :2]).all()  # phase 2 not recorded to its end
    ratios = phases.paired_phase_ratios(found.runs["none"], first, slice(1, None))
    assert ratios.pairs == SEEDS and np.allclose(ratios.observed, 0.0)


def test_the_smoothing_restarts_at_each_phase_start() -> None:
    """A curve high at the end of phase 0 and low at the start of phase 1: phase 1's time is
    when phase 1's own points get there (after 300 steps), not its first point."""
    values = np.zeros((SEEDS, len(STEPS)))
    values[:, STEPS <= PHASE] = 5.0
    values[:, STEPS > PHASE + 300] = 5.0
    found = phases.analyze(_study({"none": values, "l2@0.01": values}), "score", 1.0)
    runs = found.runs["none"]
    assert runs.reached[:, 1].all() and (runs.times[:, 1] > 300).all() and (runs.times[:, 1] < 400).all()
    assert (runs.times[:, 0] == 10.0).all()  # phase 0: above from its first point
    # the whole-curve smoothing (window 25 points) would have carried phase 0 over the change
    whole = metrics.smooth(values, metrics.smoothing_window(len(STEPS)))
    assert whole[0, np.argmax(STEPS > PHASE)] > 1.0
    shown = phases.smoothed(STEPS, values, PHASE, PHASES * PHASE)
    assert shown[0, np.argmax(STEPS > PHASE)] == 0.0  # the figure's curves restart there too
    np.testing.assert_array_equal(phases.smoothed(STEPS, values, 0, PHASES * PHASE), whole)


def _capped(times: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Curves that rise linearly from 0 at each phase's start to ``caps[phase]``, reached at
    the run's time for that phase (``times[runs, phases]``), then stay there."""
    steps = STEPS
    values = np.zeros((times.shape[0], len(steps)))
    for phase, cap in enumerate(caps):
        points = (steps > phase * PHASE) & (steps <= (phase + 1) * PHASE)
        rising = cap * (steps[points] - phase * PHASE)[None, :] / times[:, phase : phase + 1]
        values[:, points] = np.minimum(rising, cap)
    return values


def test_where_the_walls_change_each_phase_is_measured_against_its_own_best() -> None:
    """Phases alternate between a large area (a score of 4 possible) and a small one (1):
    against the whole run's "auto" threshold (half its final IQM, 2) the small phases are
    never relearned, so a condition twice as slow there cannot be told from the baseline;
    against each phase's own (half that phase's best), it is, and its time is measured."""
    caps = np.array([4.0, 1.0, 4.0, 1.0, 4.0])
    base = np.full((SEEDS, PHASES), 400.0)
    slow = base.copy()
    slow[:, [1, 3]] = 800.0  # relearns the small areas twice as slowly
    slow *= np.random.default_rng(1).uniform(0.98, 1.02, (SEEDS, 1))
    data = dataclasses.replace(
        _study({"none": _capped(base, caps), "l2@0.01": _capped(slow, caps)}), thresholds={"score": "auto"}
    )
    walls = compare.analyze(dataclasses.replace(data, phase_changes=("board", "obstacles")))
    found = walls.phases
    assert walls.thresholds["score"][1] == 2.0 and found.threshold == 2.0  # the whole run's middle threshold
    assert found.per_phase and found.fraction == 0.5
    np.testing.assert_array_equal(found.thresholds, [2.0, 0.5, 2.0, 0.5, 2.0])
    assert found.runs["none"].reached.all() and found.runs["l2@0.01"].reached.all()
    np.testing.assert_allclose(found.runs["none"].times, 200.0, atol=30)  # half the cap: half the ramp
    assert found.of("l2@0.01").relearning_vs_baseline.verdict == "slower"
    assert found.of("l2@0.01").first_vs_baseline.verdict != "slower"
    words = text.relearning_sentence(walls)
    assert "50% of the best condition's final" in words and "phase by phase: 2, 0.5, 2, 0.5, 2)" in words
    assert "from each phase's start to 50% of the best" in text.answer(walls)  # the answer says what it measured
    assert not any("the whole run's" in part for part in (words, text.answer(walls)))

    silent = _capped(base, caps)
    silent[:, (STEPS > 3 * PHASE) & (STEPS <= 4 * PHASE)] = 0.0  # phase 3: nobody scores
    fallback = compare.analyze(dataclasses.replace(data, phase_changes=("board",), curves={"score": [
        ConditionCurves(name, list(range(SEEDS)), STEPS, silent) for name in ("none", "l2@0.01")]})).phases
    np.testing.assert_array_equal(fallback.thresholds, [2.0, 0.5, 2.0, 2.0, 2.0])  # phase 3: the whole run's
    np.testing.assert_array_equal(fallback.own, [True, True, True, False, True])
    assert "phase 3: no condition scored above 0 at its end, the whole run's 2" in text.phase_threshold_words(
        dataclasses.replace(walls, phases=fallback))

    permuted = compare.analyze(dataclasses.replace(data, phase_changes=("actions", "observations"))).phases
    assert not permuted.per_phase and (permuted.thresholds == 2.0).all()  # the attainable score does not change
    assert not permuted.runs["l2@0.01"].reached[:, [1, 3]].any()  # the small areas: never 2, both at their length
    np.testing.assert_array_equal(permuted.runs["none"].times[:, [1, 3]], PHASE)
    assert permuted.of("l2@0.01").relearning_vs_baseline.verdict != "slower"
    fixed = compare.analyze(dataclasses.replace(data, thresholds={"score": [2.0]}, phase_changes=("board",))).phases
    assert not fixed.per_phase  # a threshold the spec sets is kept in every phase


def test_phase_edges_with_a_shorter_last_phase_and_the_points_of_each_phase() -> None:
    np.testing.assert_array_equal(phases.phase_edges(4_500, 1_000), [0, 1_000, 2_000, 3_000, 4_000, 4_500])
    steps = np.array([0.0, 500, 1_000, 1_010, 2_000])
    edges = phases.phase_edges(2_000, 1_000)
    np.testing.assert_array_equal(phases.phase_points(steps, edges, 0), [True, True, True, False, False])
    np.testing.assert_array_equal(phases.phase_points(steps, edges, 1), [False, False, False, True, True])


def test_log_slopes_by_hand() -> None:
    times = np.array([[100.0, 200.0, 400.0], [300.0, np.nan, 300.0], [100.0, np.nan, np.nan]])
    slopes = phases.log_slopes(times)
    assert slopes[0] == pytest.approx(np.log(2)) and slopes[1] == 0.0 and np.isnan(slopes[2])


def test_a_stationary_world_has_no_phase_analysis_and_no_section() -> None:
    stationary = named_study({"none": np.full(SEEDS, 5_000.0), "l2@0.01": np.full(SEEDS, 2_500.0)})
    analysis = compare.analyze(stationary)
    assert (
        analysis.phases is None and text.relearning_sentence(analysis) is None and text.relearning_rows(analysis) == []
    )
    built = model.build(stationary, analysis, [], [])
    assert built.relearning is None and built.relearning_note is None
    assert "Relearning" not in html.render(built) and "Relearning" not in markdown.render(built)
    one_phase = dataclasses.replace(_known(), phase_steps=PHASES * PHASE)  # the world never changed within the budget
    assert compare.analyze(one_phase).phases is None


# ------------------------------------------------------------------------------ report


@pytest.fixture(scope="module")
def report(known: compare.StudyAnalysis) -> model.ReportModel:
    data = _known()
    return model.build(data, known, evidence.figures(data, known), [])


def test_the_report_has_a_relearning_section_in_html_and_markdown(report: model.ReportModel) -> None:
    assert report.relearning is not None and report.relearning.header == text.RELEARNING_HEADER
    rows = {row[0]: row for row in report.relearning.rows}
    assert rows["baseline"][5] == "baseline" and rows["L2 1e-2"][5] == "faster" and rows["L2 1e-3"][5] == "equivalent"
    assert rows["L2 1e-2"][4].startswith("1.7x [") and rows["baseline"][7].startswith("+")
    note = report.relearning_note
    assert "every 1,000 env steps (5 phases)" in note
    assert (
        "L2 1e-2 (1.7x) relearned faster than the baseline after the world changed, though not detectably faster "
        "the first time" in note
    )
    assert "the baseline took longer phase after phase" in note
    page = html.render(report)
    order = ["<h2>Verdicts</h2>", "<h2>Relearning after the world changes</h2>", "<td class='faster'>faster</td>",
             "<h4>Relearning: phase by phase</h4>", "<h2>Evidence</h2>"]  # fmt: skip
    positions = [page.index(part) for part in order]
    assert positions == sorted(positions)
    curves = next(figure for figure in report.figures if figure.title == "Learning curves: the score")
    assert "Dotted vertical lines: the world changes (every 1,000 env steps)" in curves.caption
    summary = markdown.render(report)
    assert "## Relearning after the world changes" in summary
    assert "| condition | first learning (phase 0) [95% CI] | first: vs baseline |" in summary
    assert any("changing world" in caveat for caveat in report.caveats)


def test_a_cell_of_a_changing_world_shows_its_relearning_in_the_map() -> None:
    from regspeed.analysis import factors
    from regspeed.study.spec import Factor

    cells = [dataclasses.replace(_known(), cell=f"board={board}") for board in (5, 6)]
    answer_map = factors.analyze(cells, [Factor("board", (5, 6))])
    grid = model.verdict_grid(answer_map)
    figures, per_cell = evidence.map_figures(cells, answer_map, grid)
    assert [figure.section for figure in per_cell[0]] == ["curves", "relearning"]
    built = model.build_map(cells, answer_map, grid, figures, per_cell)
    page, summary = html.render_map(built), markdown.render_map(built)
    first = page.split("<summary>board=")[1]
    assert "<h4>Relearning after the world changes</h4>" in first and "<h5>Relearning: phase by phase</h5>" in first
    assert summary.count("#### Relearning after the world changes") == 2
    assert text.map_answer(answer_map).endswith("these are the whole runs' times; each cell's relearning after the "
                                                "changes is in its section.")  # fmt: skip


def test_a_changing_worlds_answer_leads_with_relearning_then_the_first_time(known: compare.StudyAnalysis) -> None:
    said = text.answer(known)
    assert said.startswith("After the world changed, L2 1e-2 made the network relearn faster (up to 1.7x as fast).")
    assert "L2 1e-3 changed the time of relearning by less than 10%." in said
    first = said.index("The first time, no regularizer made the network learn detectably faster.")
    assert said.index("relearn faster") < first
    assert "changed the time of first learning by less than 10%." in said[first:]  # both L2s: phase 0 equivalent
    assert said.endswith("from the run's start the first time and from each change's start for relearning.")
    assert text.verdict_title(known).endswith("vs baseline over the whole run (the world changes: relearning below)")
    stationary = compare.analyze(named_study({"none": np.full(SEEDS, 5_000.0), "l2@0.01": np.full(SEEDS, 2_500.0)}))
    assert "relearn" not in text.answer(stationary) and "whole run" not in text.verdict_title(stationary)
