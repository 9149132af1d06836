"""Forecast engine speed and memory: 100,000 open deals x 2,000 draws (issue 5's target).

    .venv/bin/python bench/forecast.py [--open-deals 100000] [--draws 2000] [--periods 3]

Fits every forecast model on a 20,000-lead synthetic funnel (not timed), then builds a funnel
with `--open-deals` deals open at the end of the data (attributes resampled from the synthetic
leads, created over the last 180 days) and times one `forecast` of `--periods` months with
`--draws` draws. Prints wall time, the increase of peak RSS during the forecast, and the load
average (other work on the 2 cores changes the figures). Target here: at most 10 s and 4 GB.
The models' trees are compiled first, as `funnelcast forecast` does (`--no-compile`: LightGBM).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scoring.champions import compile_scorer
from scoring.forecast import forecast, forecast_models
from scoring.lead_scores import LeadScorer
from scoring.predict_threads import set_predict_threads
from scoring.synthetic import generate_funnel
from training.pipeline import fit_models

FORECAST_MODELS = ("lead-conversion", "deal-cycle", "deal-value", "lead-volume", "churn")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg()) + " (1, 5, 15 min)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--open-deals", type=int, default=100_000)
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--periods", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="LightGBM predict threads")
    parser.add_argument(
        "--no-compile",
        action="store_true",
        help="Predict with LightGBM only (`funnelcast forecast` compiles the trees by default)",
    )
    args = parser.parse_args()

    print(f"load average before: {_load()}")
    funnel = generate_funnel(20_000, seed=0).as_funnel()
    models, skipped = fit_models(funnel, FORECAST_MODELS, seed=0, threads=args.threads)
    if skipped:
        print(f"skipped: {skipped}")
    engine_models = forecast_models(models, {})
    assert funnel.observed_until is not None
    end = pd.Timestamp(funnel.observed_until)

    rng = np.random.default_rng(0)
    leads = funnel.leads
    picked = leads.iloc[rng.integers(0, len(leads), args.open_deals)].reset_index(drop=True)
    picked["lead_id"] = [f"open-{i}" for i in range(args.open_deals)]
    age = pd.to_timedelta(rng.uniform(0, 180, args.open_deals), unit="D")
    picked["created_at"] = end - age
    picked["outcome"] = "open"
    picked["closed_at"] = pd.NaT
    big = funnel.with_tables(leads=pd.concat([leads, picked], ignore_index=True))
    opened = int((big.leads["outcome"] == "open").sum())

    set_predict_threads(args.threads)
    if not args.no_compile:
        # What `funnelcast forecast` does when it loads the champions: compile their trees
        # (once per model version; later runs load the cached machine code in milliseconds).
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as cache:
            scorer = LeadScorer(engine_models.conversion, engine_models.cycle, engine_models.value)
            compiled = compile_scorer(scorer, Path(cache))
        print(f"compiled {compiled} boosters in {time.perf_counter() - started:.1f} s (not timed)")
    before = _peak_rss_mb()
    started = time.perf_counter()
    result = forecast(
        big, engine_models, freq="month", periods=args.periods, draws=args.draws, seed=0
    )
    seconds = time.perf_counter() - started
    peak = _peak_rss_mb()
    won = result.draws["won_deals"]
    print(
        f"{opened:,} open deals x {args.draws:,} draws, {args.periods} months: {seconds:.1f} s "
        f"(target 10 s); peak RSS {peak:,.0f} MB (+{peak - before:,.0f} MB during the forecast; "
        f"target 4,000 MB)"
    )
    print(f"won deals per month, P50: {np.median(won, axis=0).round(0).tolist()}")
    print(f"load average after: {_load()}")


if __name__ == "__main__":
    main()
