"""Train every model on a large synthetic funnel and print wall time per model and peak memory.

    .venv/bin/python bench/train.py --leads 1000000 --threads 2

Run it on an otherwise quiet machine: it prints the load average before and after, since other
work on the 2 cores changes the figures several times over. Uses a throw-away FUNNELCAST_HOME
(SQLite MLflow) so the figures include MLflow logging and registration. Target on the 2-core
machine: at most 5 minutes in all and 6 GB.
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


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg()) + " (1, 5, 15 min)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default=",".join(MODEL_NAMES))
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="LightGBM threads of every model's training and of predictions: 2 when the "
        "machine's 2 cores are the bench's own; 1 when others are busy (OpenMP threads "
        "waiting on shared cores cost far more than they gain)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as home:
        os.environ["FUNNELCAST_HOME"] = home
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        from scoring.predict_threads import set_predict_threads
        from scoring.settings import Settings
        from training.pipeline import train_models
        from training.tracking import configure

        print(f"load average before: {_load()}")
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
        print(f"load average after: {_load()}")


if __name__ == "__main__":
    main()
