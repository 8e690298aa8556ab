"""The sequential rule on studies written as arrays: what each look decides, what the runner
is told to run next, and the spending of alpha over the looks."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from test_analysis import _finished, _rising, _study

from regspeed.analysis import compare, sequential, stats
from regspeed.report import text


def _three_looks(waves_run: int) -> object:
    """A sequential study with looks at 10, 20 and 30 seeds, of which ``waves_run`` waves have
    run: "slow" takes twice the baseline's time, "same" is within 1% of it seed by seed,
    "noisy" differs by up to 40% either way at random."""
    rng = np.random.default_rng(21)
    seeds = 10 * waves_run
    base_times = rng.uniform(3_000, 4_000, 30)[:seeds]
    conditions = {
        "none": base_times,
        "slow": base_times * 2,
        "same": base_times * rng.uniform(0.99, 1.01, 30)[:seeds],
        "noisy": base_times * rng.uniform(0.6, 1.4, 30)[:seeds],
    }
    data = _study({name: (_rising(times), _finished(name, seeds)) for name, times in conditions.items()}, {})
    return dataclasses.replace(data, looks=(10, 20, 30))


def test_spending_is_pocock_like_and_sums_to_alpha() -> None:
    spent = sequential.spending((10, 20, 30, 40))
    assert sum(spent) == pytest.approx(stats.ALPHA)
    assert all(later < earlier for earlier, later in itertools.pairwise(spent))  # decreasing increments
    assert spent[0] == pytest.approx(stats.ALPHA * np.log(1 + (np.e - 1) / 4))


def test_each_look_decides_what_it_can_and_the_rest_get_the_next_wave() -> None:
    first = sequential.outcome(_three_looks(1))
    assert first is not None and first.completed == 1
    assert {name: d.verdict for name, d in first.decisions.items()} == {"slow": "slower", "same": "equivalent"}
    assert all(d.look == 0 and d.seeds == 10 for d in first.decisions.values())
    assert first.open == ["noisy"] and sequential.next_wave(_three_looks(1)) == ["noisy"]
    # after the last look nothing stays open: what is not decided is inconclusive
    last = sequential.outcome(_three_looks(3))
    assert last.completed == 3 and last.open == [] and sequential.next_wave(_three_looks(3)) == []
    assert last.decisions["noisy"].verdict == "inconclusive" and last.decisions["noisy"].seeds == 30
    assert last.decisions["slow"] == first.decisions["slow"]  # decided once, never reopened


def test_a_look_counts_only_once_all_its_runs_have_ended() -> None:
    data = _three_looks(1)
    running = [
        dataclasses.replace(r, status="running") if (r.condition, r.seed) == ("noisy", 3) else r for r in data.runs
    ]
    found = sequential.outcome(dataclasses.replace(data, runs=running))
    assert found.completed == 0 and found.decisions == {} and found.open == ["slow", "same", "noisy"]


def test_the_report_takes_a_sequential_study_s_verdicts_from_its_looks() -> None:
    data = _three_looks(2)
    # the decided conditions stop receiving runs: drop their second wave, as the runner never ran it
    kept = [r for r in data.runs if r.condition in ("none", "noisy") or r.seed < 10]
    curves = {
        metric: [
            dataclasses.replace(c, seeds=c.seeds[:10], values=c.values[:10]) if c.condition in ("slow", "same") else c
            for c in found
        ]
        for metric, found in data.curves.items()
    }
    analysis = compare.analyze(dataclasses.replace(data, runs=kept, curves=curves))
    assert analysis.sequential is not None and analysis.sequential.completed == 2
    verdicts = {name: c.verdict for name, c in analysis.primary.items()}
    assert verdicts == {"slow": "slower", "same": "equivalent", "noisy": "inconclusive"}
    assert analysis.primary["slow"].pairs == 10 and analysis.primary["noisy"].pairs == 20
    assert analysis.primary["slow"].p_holm < stats.ALPHA <= analysis.primary["noisy"].p_holm
    line = text.sequential_line(analysis)
    assert "looks at 10, 20, 30 seeds" in line and "slow slower at 10 seeds; same equivalent at 10 seeds" in line
    assert "Still open after look 2: noisy." in line and "It ran 60 of the 120 runs of the fixed design (50% " in line


def test_a_study_with_one_look_has_no_sequential_outcome() -> None:
    data = _study({"none": (_rising([5_000.0] * 3), _finished("none", 3))}, {})
    assert sequential.outcome(data) is None and sequential.next_wave(data) == []
    assert compare.analyze(data).sequential is None
