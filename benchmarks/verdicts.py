"""Calibration of the paired verdicts by simulation: error rates, power, equivalence, power statements, intervals.

Synthetic studies like the real ones (10 x 10 Snake, PPO): per seed, the baseline's and
each condition's log times to threshold are drawn correlated (median 1.2e5 steps, spread
``log_sd``, seed-pair correlation ``correlation``), a condition with speed-up r has its log
times shifted by -log r, and runs that do not reach the threshold by the budget are
censored there (time = budget, reached = False). Tails: normal; ``t3`` (a seed-level
multivariate t with 3 degrees of freedom, scaled to the same spread: heavy-tailed pairs);
``outliers`` (each run 3x slower with probability 0.1). ``grid`` rounds times up to whole
PPO updates of 8192 steps (ties and zero ratios): the worst case of a study's resolution,
since ``metrics.steps_to_threshold`` interpolates between recorded points. Every
comparison goes through ``regspeed.analysis.stats`` as the analysis calls it.

Tables: (a) false-positive rate of one comparison, paired signed-rank vs unpaired log-rank
on the same data; (b) family-wise error of a 9-condition null study with Holm (2/3 as many
studies a cell: each holds 9 comparisons); (c) power;
(d) how often the TOST calls a comparison equivalent; (e) the power statement's
detectable speed-up against the truth; (f) coverage of the 95% interval; (g) sequential
designs against the fixed design of the same maximum seeds. Rates carry their
Monte-Carlo standard error (``rate +- se``). Fixed seeds: every run prints the same numbers.

    .venv/bin/python benchmarks/verdicts.py            # 3000 studies a cell: ~9 minutes on 2 busy cores
    .venv/bin/python benchmarks/verdicts.py --quick    # 300 studies a cell: ~1 minute
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import math
import platform
import sys
import time
import zlib
from collections.abc import Sequence

import numpy as np
import scipy

from regspeed.analysis import sequential, stats

LOG_MEDIAN = math.log(1.2e5)  # median steps to threshold of a real study's baseline
STEPS_PER_UPDATE = 8192  # PPO: 64 environments x 128 steps
ALPHA = stats.ALPHA
MARGIN = 1.1  # the analysis' default equivalence margin
CONDITIONS = 9  # regularized conditions of the default study
OUTLIER_SHARE, OUTLIER_FACTOR = 0.1, 3.0


@dataclasses.dataclass(frozen=True)
class Scenario:
    """How a synthetic study's times to threshold are drawn."""

    tails: str = "normal"  # normal, t3 or outliers
    log_sd: float = 0.2
    correlation: float = 0.6
    censored: float = 0.0  # share of the baseline's runs censored at the budget (0: budget 5x the median)
    grid: int = 0  # times rounded up to multiples of this many steps (0: continuous)

    @property
    def label(self) -> str:
        """A short description for the tables."""
        grid = f", {self.grid}-step grid" if self.grid else ""
        return f"{self.tails} sd {self.log_sd:g} rho {self.correlation:g}{grid}"


def rng_for(*key: object) -> np.random.Generator:
    """A generator seeded from ``key`` (stable across runs and processes, unlike ``hash``)."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def log_noise(scenario: Scenario, shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Log-time deviations from the median, ``shape`` = (studies, arms, seeds): arms of one seed
    correlated ``scenario.correlation`` (equicorrelated), marginal spread ``scenario.log_sd``."""
    studies, _, seeds = shape
    rho = scenario.correlation
    shared = rng.standard_normal((studies, 1, seeds))
    z = np.sqrt(rho) * shared + np.sqrt(1 - rho) * rng.standard_normal(shape)
    if scenario.tails == "t3":  # multivariate t (one chi-square per seed), unit variance
        z = z / np.sqrt(rng.chisquare(3, (studies, 1, seeds)) / 3) / np.sqrt(3.0)
    noise = scenario.log_sd * z
    if scenario.tails == "outliers":
        noise = noise + np.log(OUTLIER_FACTOR) * (rng.random(shape) < OUTLIER_SHARE)
    return noise


def on_grid(steps: np.ndarray | float, grid: int) -> np.ndarray:
    """Steps rounded up to a multiple of ``grid`` (unchanged when ``grid`` is 0)."""
    return np.ceil(np.asarray(steps) / grid) * grid if grid else np.asarray(steps, float)


def budget_of(scenario: Scenario) -> float:
    """The budget: 5x the median when nothing is to be censored, else the baseline's
    ``1 - censored`` quantile (of 200,000 draws); on the grid, a whole number of updates."""
    if scenario.censored <= 0:
        budget = 5 * math.exp(LOG_MEDIAN)
    else:
        draws = LOG_MEDIAN + log_noise(scenario, (200_000, 1, 1), rng_for("budget", scenario)).ravel()
        budget = float(on_grid(np.exp(np.quantile(draws, 1 - scenario.censored)), scenario.grid))
    return float(np.floor(budget / scenario.grid) * scenario.grid) if scenario.grid else budget


def draw_studies(
    scenario: Scenario, speedups: Sequence[float], seeds: int, studies: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Times to threshold and whether reached, ``[studies, arms, seeds]``; arm i runs ``speedups[i]``
    times faster than the median (arm 0, speed-up 1, is the baseline), censored at the budget."""
    speedups = np.asarray(speedups, float)[None, :, None]
    logs = LOG_MEDIAN - np.log(speedups) + log_noise(scenario, (studies, speedups.shape[1], seeds), rng)
    steps = on_grid(np.exp(logs), scenario.grid)
    budget = budget_of(scenario)
    return np.minimum(steps, budget), steps <= budget


def ratios_of(times: np.ndarray, reached: np.ndarray, study: int, arm: int) -> stats.PairedRatios:
    """The paired ratios of one arm against the baseline (arm 0) in one study."""
    return stats.paired_ratios(times[study, 0], reached[study, 0], times[study, arm], reached[study, arm])


def logrank_of(times: np.ndarray, reached: np.ndarray, study: int, arm: int) -> tuple[float, bool]:
    """The unpaired analysis of one arm: log-rank p-value and whether the arm looks faster
    (smaller restricted mean time, as the analysis decides the direction)."""
    base_t, base_r, t, r = times[study, 0], reached[study, 0], times[study, arm], reached[study, arm]
    budget = float(max(times[study, 0].max(), times[study, arm].max()))  # the curves are flat beyond it
    faster = stats.restricted_mean_time(t, r, budget) < stats.restricted_mean_time(base_t, base_r, budget)
    with np.errstate(invalid="ignore"):  # all times tied: scipy divides 0 by 0, logrank_p answers 1
        return stats.logrank_p(t, r, base_t, base_r), bool(faster)


def rate(hits: float, n: int) -> str:
    """``hits / n`` with its Monte-Carlo standard error."""
    if hits == 0:
        return f"0 of {n}"
    p = hits / n
    return f"{p:.3f} ± {math.sqrt(p * (1 - p) / n):.3f}"


def markdown(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table (columns padded so the plain text reads too)."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    return "\n".join([lines[0], "|" + "|".join("-" * (w + 2) for w in widths) + "|", *lines[1:]])


# ------------------------------------------------------------------------------ the tables


def false_positives(scenarios: Sequence[Scenario], seed_counts: Sequence[int], studies: int) -> list[list[str]]:
    """(a) Share of null comparisons (identical conditions) called different at ALPHA: paired
    signed-rank vs log-rank on the same studies; one row per scenario."""
    rows = []
    for scenario in scenarios:
        row = [scenario.label, f"{scenario.censored:.0%}"]
        for seeds in seed_counts:
            times, reached = draw_studies(scenario, (1.0, 1.0), seeds, studies, rng_for("a", scenario, seeds))
            paired = sum(stats.paired_test(ratios_of(times, reached, s, 1), MARGIN).p_difference < ALPHA
                         for s in range(studies))  # fmt: skip
            logrank = sum(logrank_of(times, reached, s, 1)[0] < ALPHA for s in range(studies))
            row += [rate(paired, studies), rate(logrank, studies)]
        rows.append(row)
    return rows


def family_verdicts(times: np.ndarray, reached: np.ndarray, study: int) -> list[str]:
    """The verdicts of one study's conditions against its baseline, as the analysis gives them
    (Holm over the family for both the difference and the equivalence p-values)."""
    tests = [stats.paired_test(ratios_of(times, reached, study, arm), MARGIN) for arm in range(1, times.shape[1])]
    differences = stats.holm([t.p_difference for t in tests])
    equivalences = stats.holm([t.p_equivalence for t in tests])
    return [
        stats.verdict(p, t.faster_direction, q, ALPHA) for t, p, q in zip(tests, differences, equivalences, strict=True)
    ]


def family_errors(scenarios: Sequence[Scenario], seed_counts: Sequence[int], studies: int) -> list[list[str]]:
    """(b) Studies of CONDITIONS null conditions: share with any faster/slower verdict (the
    family-wise error) and the share of conditions called equivalent."""
    rows = []
    for scenario in scenarios:
        row = [scenario.label, f"{scenario.censored:.0%}"]
        for seeds in seed_counts:
            times, reached = draw_studies(
                scenario, (1.0,) * (CONDITIONS + 1), seeds, studies, rng_for("b", scenario, seeds)
            )
            verdicts = [family_verdicts(times, reached, s) for s in range(studies)]
            errors = sum(any(v in ("faster", "slower") for v in found) for found in verdicts)
            equivalent = sum(found.count("equivalent") for found in verdicts) / CONDITIONS
            row += [rate(errors, studies), f"{equivalent / studies:.3f}"]
        rows.append(row)
    return rows


def powers(
    scenarios: Sequence[Scenario], seed_counts: Sequence[int], speedups: Sequence[float], studies: int
) -> list[list[str]]:
    """(c) Share of studies in which a condition with a planted speed-up is found faster, by
    the paired test and by log-rank on the same data, at ALPHA and at ALPHA / CONDITIONS."""
    rows = []
    levels = (ALPHA, ALPHA / CONDITIONS)
    for scenario in scenarios:
        for seeds in seed_counts:
            for speedup in speedups:
                times, reached = draw_studies(
                    scenario, (1.0, speedup), seeds, studies, rng_for("c", scenario, seeds, speedup)
                )
                found = np.zeros((2, len(levels)))
                for s in range(studies):
                    test = stats.paired_test(ratios_of(times, reached, s, 1), MARGIN)
                    p_logrank, logrank_faster = logrank_of(times, reached, s, 1)
                    for j, level in enumerate(levels):
                        found[0, j] += test.p_difference < level and test.faster_direction
                        found[1, j] += p_logrank < level and logrank_faster
                cells = [rate(found[m, j], studies) for j in range(len(levels)) for m in range(2)]
                rows.append([scenario.label, f"{scenario.censored:.0%}", seeds, f"{speedup:g}x", *cells])
    return rows


def equivalence_rates(
    scenarios: Sequence[Scenario], speedups: Sequence[float], seed_counts: Sequence[int], studies: int
) -> list[list[str]]:
    """(d) Share of single comparisons (ALPHA, margin MARGIN) with the verdict ``equivalent``, by
    true speed-up: high is good at 1, at most ALPHA at the margin (the TOST's size), ~0 beyond."""
    rows = []
    for scenario in scenarios:
        for speedup in speedups:
            row = [scenario.label, f"{speedup:.3g}x"]
            for seeds in seed_counts:
                times, reached = draw_studies(
                    scenario, (1.0, speedup), seeds, studies, rng_for("d", scenario, seeds, speedup)
                )
                called = 0
                for s in range(studies):
                    test = stats.paired_test(ratios_of(times, reached, s, 1), MARGIN)
                    called += (
                        stats.verdict(test.p_difference, test.faster_direction, test.p_equivalence, ALPHA)
                        == "equivalent"
                    )
                row.append(rate(called, studies))
            rows.append(row)
    return rows


def true_model(scenario: Scenario) -> stats.TimeModel:
    """The :class:`stats.TimeModel` a normal scenario is drawn from."""
    pair_sd = scenario.log_sd * math.sqrt(2 * (1 - scenario.correlation))
    return stats.TimeModel(LOG_MEDIAN, scenario.log_sd, pair_sd, budget_of(scenario))


def detection_rate(scenario: Scenario, speedup: float, seeds: int, alpha: float, simulations: int) -> float:
    """Share of simulated comparisons whose paired test rejects at ``alpha`` (either direction,
    as :func:`stats.power` counts), drawn from the scenario itself (common random numbers
    across speed-ups)."""
    times, reached = draw_studies(scenario, (1.0, speedup), seeds, simulations, rng_for("truth", scenario, seeds))
    hits = sum(stats.signed_rank_p(ratios_of(times, reached, s, 1).observed) < alpha for s in range(simulations))
    return hits / simulations


def true_detectable(scenario: Scenario, seeds: int, alpha: float, simulations: int) -> float:
    """The smallest speed-up of :data:`stats.SPEEDUP_GRID` found with probability :data:`stats.POWER`."""
    grid = stats.SPEEDUP_GRID  # detection grows with the speed-up: bisect the grid
    found = bisect.bisect_left(
        grid, True, key=lambda s: detection_rate(scenario, s, seeds, alpha, simulations) >= stats.POWER
    )
    return grid[found] if found < len(grid) else float("inf")


def stated_detectable(
    scenario: Scenario, speedups: Sequence[float], seeds: int, alpha: float, study: int
) -> tuple[float, float]:
    """The detectable speed-up the analysis states for one synthetic study (the model fitted to
    the baseline's censored times and the pair spread pooled over every comparison), and the
    fitted pair spread; NaN where no model can be fitted."""
    times, reached = draw_studies(scenario, (1.0, *speedups), seeds, 1, rng_for("e", scenario, study))
    ratios = [ratios_of(times, reached, 0, arm) for arm in range(1, len(speedups) + 1)]
    model = stats.fit_time_model(times[0, 0], reached[0, 0], stats.pooled_pair_sd(ratios), budget_of(scenario))
    if model is None:
        return float("nan"), float("nan")
    return stats.power_statement(model, seeds, alpha).detectable_speedup, model.pair_sd


STATED_SPEEDUPS = (0.8, 0.9, 1.0, 1.0, 1.0, 1.0, 1.1, 1.2, 1.3)  # the 9 conditions of a synthetic study


def power_statements(scenarios: Sequence[Scenario], studies: int, simulations: int) -> list[list[str]]:
    """(e) The stated detectable speed-up of 10-seed, 9-condition studies (at ALPHA / 9) against
    the truth: the distribution of stated / true, of the speed-up and of its log."""
    rows = []
    seeds, alpha = 10, ALPHA / CONDITIONS
    for scenario in scenarios:
        truth = true_detectable(scenario, seeds, alpha, simulations)
        on_true = stats.power_statement(true_model(scenario), seeds, alpha).detectable_speedup
        found = np.array([stated_detectable(scenario, STATED_SPEEDUPS, seeds, alpha, s) for s in range(studies)])
        fitted = found[np.isfinite(found[:, 0])]
        ratio, log_ratio = fitted[:, 0] / truth, np.log(fitted[:, 0]) / np.log(truth)
        pair_sd = np.median(fitted[:, 1]) / true_model(scenario).pair_sd
        p10, p50, p90 = np.quantile(ratio, [0.1, 0.5, 0.9])
        rows.append([
            scenario.label, f"{scenario.censored:.0%}", f"{truth:.3g}", f"{on_true:.3g}",
            f"{p50:.3f} [{p10:.3f}, {p90:.3f}]", f"{np.mean(np.abs(ratio - 1) <= 0.2):.3f}",
            f"{np.median(log_ratio):.2f} [{np.quantile(log_ratio, 0.1):.2f}, {np.quantile(log_ratio, 0.9):.2f}]",
            f"{np.mean(np.abs(log_ratio - 1) <= 0.2):.3f}", f"{pair_sd:.3f}", f"{len(found) - len(fitted)}",
        ])  # fmt: skip
    return rows


def coverages(
    scenarios: Sequence[Scenario], seed_counts: Sequence[int], speedup: float, studies: int
) -> list[list[str]]:
    """(f) Share of 95% intervals (``paired_test(...).interval``) holding the true log speed-up,
    and the share of intervals with an infinite end."""
    rows = []
    truth = math.log(speedup)
    for scenario in scenarios:
        row = [scenario.label, f"{scenario.censored:.0%}"]
        for seeds in seed_counts:
            times, reached = draw_studies(scenario, (1.0, speedup), seeds, studies, rng_for("f", scenario, seeds))
            covered = infinite = 0
            for s in range(studies):
                low, high = stats.paired_test(ratios_of(times, reached, s, 1), MARGIN).interval
                covered += low <= truth <= high
                infinite += not (np.isfinite(low) and np.isfinite(high))
            row += [rate(covered, studies), f"{infinite / studies:.2f}"]
        rows.append(row)
    return rows


def sequential_replay(
    times: np.ndarray, reached: np.ndarray, study: int, looks: tuple[int, ...]
) -> tuple[dict[int, str], int]:
    """One synthetic study run sequentially (``analysis.sequential.decide`` on its first
    ``n_k`` seeds at look k): each condition's verdict, and the runs it took (the baseline
    runs until the last condition is decided)."""
    arms = list(range(1, times.shape[1]))

    def pairs_at(arm: str, look: int) -> stats.PairedRatios:
        n = looks[look]
        a = int(arm)
        return stats.paired_ratios(
            times[study, 0, :n], reached[study, 0, :n], times[study, a, :n], reached[study, a, :n]
        )

    found = sequential.decide([str(a) for a in arms], looks, pairs_at, lambda look, open_: True, MARGIN, ALPHA)
    used = {int(name): decision.seeds for name, decision in found.decisions.items()}
    return {int(name): d.verdict for name, d in found.decisions.items()}, sum(used.values()) + max(used.values())


def sequential_designs(
    scenarios: Sequence[Scenario], designs: Sequence[tuple[int, ...]], studies: int
) -> list[list[str]]:
    """(g) Sequential studies of CONDITIONS conditions against the fixed design with the same
    maximum seeds (Holm): family-wise error of null studies, and for studies with the
    conditions of :data:`STATED_SPEEDUPS`, how often the 0.8x and 1.3x conditions are found
    and the share of the fixed design's runs used."""
    rows = []
    for scenario in scenarios:
        for looks in designs:
            most = looks[-1]
            fixed_runs = (CONDITIONS + 1) * most
            null_t, null_r = draw_studies(
                scenario, (1.0,) * (CONDITIONS + 1), most, studies, rng_for("g0", scenario, looks)
            )
            seq_errors = fixed_errors = 0
            for s in range(studies):
                verdicts, _ = sequential_replay(null_t, null_r, s, looks)
                seq_errors += any(v in ("faster", "slower") for v in verdicts.values())
                fixed_errors += any(v in ("faster", "slower") for v in family_verdicts(null_t, null_r, s))
            mixed_t, mixed_r = draw_studies(
                scenario, (1.0, *STATED_SPEEDUPS), most, studies, rng_for("g1", scenario, looks)
            )
            found = np.zeros((2, 2))  # [sequential, fixed] x [0.8x slower, 1.3x faster]
            used = []
            slow, fast = STATED_SPEEDUPS.index(0.8) + 1, STATED_SPEEDUPS.index(1.3) + 1
            for s in range(studies):
                verdicts, runs = sequential_replay(mixed_t, mixed_r, s, looks)
                fixed = family_verdicts(mixed_t, mixed_r, s)
                found[0] += (verdicts[slow] == "slower", verdicts[fast] == "faster")
                found[1] += (fixed[slow - 1] == "slower", fixed[fast - 1] == "faster")
                used.append(runs / fixed_runs)
            rows.append([
                scenario.label, f"{scenario.censored:.0%}", "/".join(map(str, looks)),
                rate(seq_errors, studies), rate(fixed_errors, studies),
                rate(found[0, 0], studies), rate(found[1, 0], studies),
                rate(found[0, 1], studies), rate(found[1, 1], studies), f"{np.mean(used):.2f}",
            ])  # fmt: skip
    return rows


# ------------------------------------------------------------------------------ main


def smallest_p_values(pair_counts: Sequence[int]) -> str:
    """The smallest two-sided signed-rank p-value each number of pairs can give (every pair one way)."""
    return ", ".join(f"{n}: {stats.signed_rank_p(np.arange(1.0, n + 1)):.3g}" for n in pair_counts)


def censored_shares(scenarios: Sequence[Scenario]) -> str:
    """The measured share of baseline runs censored in each scenario (one line each)."""
    lines = []
    for scenario in scenarios:
        _, reached = draw_studies(scenario, (1.0,), 1, 20_000, rng_for("share", scenario))
        lines.append(f"  {scenario.label}, budget {budget_of(scenario):,.0f}: {1 - reached.mean():.1%} censored")
    return "\n".join(lines)


def main() -> None:
    """Print the seven tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer simulated studies (~1 minute)")
    args = parser.parse_args()
    studies = 300 if args.quick else 3000
    stated_studies, truth_simulations = (40, 1500) if args.quick else (200, 6000)
    started = time.perf_counter()
    print("# Verdict calibration (regspeed.analysis.stats)\n")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"{platform.machine()} {platform.system()}")  # fmt: skip
    print(f"reproduce: .venv/bin/python benchmarks/verdicts.py{' --quick' if args.quick else ''}")
    print(f"{studies} simulated studies a cell; rates are 'rate ± Monte-Carlo standard error'; alpha {ALPHA}, "
          f"margin {MARGIN}, median time {math.exp(LOG_MEDIAN):,.0f} steps\n")  # fmt: skip

    tails = [Scenario(t, censored=c) for t in ("normal", "t3", "outliers") for c in (0.0, 0.3)]
    grid = [Scenario(log_sd=0.1, grid=STEPS_PER_UPDATE, censored=c) for c in (0.0, 0.3)]
    print("Budgets and censoring (share of baseline runs not reaching the threshold):")
    print(censored_shares([*tails, *grid]) + "\n")

    seed_counts = (3, 5, 10, 20)
    print(f"## (a) False-positive rate of one null comparison at alpha {ALPHA} (paired signed-rank / log-rank)\n")
    headers = ["scenario", "censored"] + [f"{n} seeds {m}" for n in seed_counts for m in ("paired", "log-rank")]
    print(markdown(headers, false_positives([*tails, *grid], seed_counts, studies)) + "\n")

    seed_counts = (5, 10, 20)
    family = [Scenario(censored=0.0), Scenario(censored=0.3), grid[1]]
    print(
        f"## (b) {CONDITIONS} null conditions, Holm: family-wise error (any faster/slower), share called equivalent\n"
    )
    headers = ["scenario", "censored"] + [f"{n} seeds {m}" for n in seed_counts for m in ("FWER", "equivalent")]
    print(markdown(headers, family_errors(family, seed_counts, studies * 2 // 3)) + "\n")

    print(f"## (c) Power: planted speed-up found faster (paired / log-rank, alpha {ALPHA} and {ALPHA}/{CONDITIONS})\n")
    headers = ["scenario", "censored", "seeds", "speed-up", "paired .05", "log-rank .05",
               f"paired .05/{CONDITIONS}", f"log-rank .05/{CONDITIONS}"]  # fmt: skip
    print(markdown(headers, powers([Scenario(censored=0.0), Scenario(censored=0.3)], (5, 10), (1.2, 1.5), studies)))
    print("\nsmallest two-sided paired p-value by pairs: " + smallest_p_values((3, 5, 6, 8, 9, 10, 20)) + "\n")

    spreads = [Scenario(log_sd=0.06, correlation=0.9), Scenario(),
               Scenario(log_sd=0.06, correlation=0.9, grid=STEPS_PER_UPDATE)]  # fmt: skip
    effects = (1.0, MARGIN, 1 / MARGIN, 1.3, 1 / 1.3)
    print(f"## (d) Share called 'equivalent' (margin {MARGIN}, alpha {ALPHA}, one comparison) by true speed-up\n")
    headers = ["scenario", "true speed-up"] + [f"{n} seeds" for n in seed_counts]
    print(markdown(headers, equivalence_rates(spreads, effects, seed_counts, studies)) + "\n")

    models = [*(Scenario(censored=c) for c in (0.0, 0.1, 0.3, 0.5)), Scenario(log_sd=0.1, correlation=0.9),
              Scenario(log_sd=0.3, correlation=0.4, censored=0.3), Scenario("t3"), grid[0]]  # fmt: skip
    print(f"## (e) Power statement: detectable speed-up of 10-seed, {CONDITIONS}-condition studies at alpha "
          f"{ALPHA}/{CONDITIONS}, stated (fitted model) / true\n")  # fmt: skip
    print(f"{stated_studies} synthetic studies a row (condition speed-ups {STATED_SPEEDUPS}); truth: the paired "
          f"test on {truth_simulations} studies drawn from the scenario itself a grid point; 'power_statement(true)':"
          " the statement on the true normal model\n")  # fmt: skip
    headers = ["scenario", "censored", "true", "power_statement(true)", "stated/true median [p10, p90]",
               "within ±20%", "log ratio median [p10, p90]", "log within ±20%", "pair_sd fitted/true",
               "no model"]  # fmt: skip
    print(markdown(headers, power_statements(models, stated_studies, truth_simulations)) + "\n")

    print("## (f) Coverage of the 95% interval of the log speed-up (true speed-up 1.2) | share with an infinite end\n")
    headers = ["scenario", "censored"] + [f"{n} seeds {m}" for n in seed_counts for m in ("coverage", "infinite")]
    print(markdown(headers, coverages([*tails, *grid], seed_counts, 1.2, studies)) + "\n")

    print(f"## (g) Sequential vs fixed design ({CONDITIONS} conditions, looks as listed; fixed: Holm at the last)\n")
    print(f"FWER: null studies, any faster/slower; found: studies with speed-ups {STATED_SPEEDUPS}, the 0.8x "
          "condition called slower and the 1.3x one faster; runs: sequential runs / fixed design's runs\n")  # fmt: skip
    headers = ["scenario", "censored", "looks", "FWER seq", "FWER fixed", "0.8x seq", "0.8x fixed",
               "1.3x seq", "1.3x fixed", "runs used"]  # fmt: skip
    designs = ((10, 20), (5, 10, 15, 20))
    scenarios = [Scenario(), Scenario(censored=0.3), Scenario(log_sd=0.06, correlation=0.7)]
    print(markdown(headers, sequential_designs(scenarios, designs, studies // 3)) + "\n")
    print(f"{time.perf_counter() - started:.0f} s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
