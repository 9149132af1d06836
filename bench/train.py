"""Train every model on a large synthetic funnel and print wall time per model and peak memory.

    .venv/bin/python bench/train.py --leads 1000000 --threads 2

Uses a throw-away FUNNELCAST_HOME (SQLite MLflow) so the figures include MLflow logging and
registration. Target on the 2-core machine: at most 5 minutes in all and 6 GB.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

from scoring.registry import MODEL_NAMES
from scoring.synthetic import generate_funnel


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default=",".join(MODEL_NAMES))
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="LightGBM threads for lead-conversion training and for predictions (the bench "
        "assumes the machine's 2 cores are its own; tests and the CLI use 1)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as home:
        os.environ["FUNNELCAST_HOME"] = home
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        from scoring.predict_threads import set_predict_threads
        from scoring.settings import Settings
        from training.pipeline import train_models
        from training.tracking import configure

        started = time.perf_counter()
        funnel = generate_funnel(args.leads, seed=args.seed).as_funnel()
        leads = funnel.leads
        print(f"data        {time.perf_counter() - started:7.1f} s  ({len(leads):,} leads)")
        configure(Settings())
        set_predict_threads(args.threads)
        total = 0.0
        for name in args.models.split(","):
            started = time.perf_counter()
            [outcome] = train_models(
                funnel, [name], seed=args.seed, promote=True, threads=args.threads
            )
            seconds = time.perf_counter() - started
            total += seconds
            detail = (
                outcome.message if outcome.status == "skipped" else f"version {outcome.version}"
            )
            print(f"{name:<16}{seconds:7.1f} s  {detail}  peak RSS {_peak_rss_mb():,.0f} MB")
        print(f"all models  {total:7.1f} s  (target: 300 s; {args.threads} threads)")
        print(f"peak RSS    {_peak_rss_mb():7,.0f} MB  (target: 6,000 MB)")


if __name__ == "__main__":
    main()
