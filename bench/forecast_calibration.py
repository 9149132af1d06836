"""Are the forecast's intervals and goal probabilities honest? Pooled checks on synthetic funnels.

    .venv/bin/python bench/forecast_calibration.py [--funnels 2] [--cutoffs 6] [--periods 3]

For each synthetic funnel (a known process with quarter-end pushes, `scoring.synthetic`), at
month-end cutoffs in its last year, the back-test runner refits every model on the funnel as of
the cutoff and forecasts the next `--periods` months. Each (cutoff, KPI, period) with an actual
is one interval check: does [P10, P90] hold the actual? Nominal coverage is 80 %; the issue's
bar is 72-88 % over at least 200 checks. Goals: for each check a goal "KPI at least actual x
U(0.7, 1.3)" is scored by the forecast's probability of meeting it (the share of draws at or
above the target) and by the 0/1 rule "the P50 meets it"; Brier scores of both are printed
(lower is better). Every figure is on data after the cutoff, which the refitted models never saw.
"""

from __future__ import annotations

import argparse
import time
from datetime import date

import numpy as np

from scoring.synthetic import generate_funnel
from training.backtest import BacktestSettings, run_backtest

KPIS = ("lead_count", "won_deals", "won_revenue", "win_rate", "avg_deal_size", "pipeline_value")


def _month_ends(last: date, count: int, step: int) -> list[date]:
    ends = []
    year, month = last.year, last.month
    for _ in range(count):
        month -= step
        while month < 1:
            month += 12
            year -= 1
        following = date(year + (month == 12), month % 12 + 1, 1)
        ends.append(date.fromordinal(following.toordinal() - 1))
    return sorted(ends)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--funnels", type=int, default=2)
    parser.add_argument("--leads", type=int, default=8000)
    parser.add_argument("--cutoffs", type=int, default=6)
    parser.add_argument("--periods", type=int, default=3)
    parser.add_argument("--draws", type=int, default=1000)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    inside, checks = 0, 0
    probability_brier, rule_brier, goals = 0.0, 0.0, 0
    started = time.perf_counter()
    for seed in range(args.funnels):
        funnel = generate_funnel(args.leads, seed=100 + seed, end=date(2026, 6, 30)).as_funnel()
        cutoffs = _month_ends(date(2026, 6, 30), args.cutoffs, args.periods)
        settings = BacktestSettings(
            freq="month", periods=args.periods, kpis=KPIS, draws=args.draws, seed=seed, threads=1
        )
        backtest = run_backtest(funnel, cutoffs, settings)
        for run in backtest.runs:
            low, high = run.forecast["p10"], run.forecast["p90"]
            if run.actual is None or low is None or high is None:
                continue
            checks += 1
            inside += int(low <= run.actual <= high)
            target = run.actual * rng.uniform(0.7, 1.3)
            met = float(run.actual >= target)
            draws = backtest.draws[(run.cutoff, run.period_start, run.kpi)]
            chance = float(np.mean(np.nan_to_num(draws, nan=-np.inf) >= target))
            p50 = run.forecast["p50"]
            if p50 is None:
                continue
            goals += 1
            probability_brier += (chance - met) ** 2
            rule_brier += (float(p50 >= target) - met) ** 2
        print(f"funnel {seed}: {checks} checks so far, {time.perf_counter() - started:.0f} s")
    print(f"P10-P90 coverage: {inside}/{checks} = {inside / max(checks, 1):.1%} (bar 72-88 %)")
    if goals:
        print(
            f"goals: {goals}; Brier of the attainment probability {probability_brier / goals:.4f}"
            f" vs the P50 rule {rule_brier / goals:.4f} (lower is better)"
        )


if __name__ == "__main__":
    main()
