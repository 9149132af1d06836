"""Dask parity and timings: lead-conversion trained on a local cluster against one machine, and
Dask scoring against single-machine scoring.

    .venv/bin/python bench/dask_parity.py [--leads 200000] [--workers 2] [--score-leads 200000]

Generates a synthetic funnel of `--leads` leads, trains lead-conversion on one machine and with
`DaskBoosting` on a `LocalCluster` of `--workers` processes on 127.0.0.1 (the same split and
evaluation slice), and prints both ROC-AUCs on the evaluation slice (target: within 0.01), the
training rows each worker held, and the wall times. Then it scores `--score-leads` leads split
over 8 Parquet files with `score_parquet_dask` and with `score_file` over the same leads in one
file, prints both times and the largest difference between the two outputs (target: 0).
Prints figures; it passes or fails nothing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scoring.batch_score import BatchOptions, score_file
from scoring.batch_score_dask import score_parquet_dask, scores_frame
from scoring.dask_cluster import dask_client
from scoring.lead_scores import LeadScorer
from scoring.synthetic import generate_funnel
from training.lead_conversion import train_lead_conversion
from training.lead_conversion_dask import DaskBoosting
from training.pipeline import fit_models


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg()) + " (1, 5, 15 min)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--score-leads", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"load average before: {_load()}")
    funnel = generate_funnel(args.leads, seed=args.seed).as_funnel()
    started = time.perf_counter()
    single = train_lead_conversion(funnel, seed=args.seed)
    single_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder, dask_client(None, args.workers) as cluster:
        work = Path(folder)
        boosting = DaskBoosting(cluster, work / "dask-work")
        started = time.perf_counter()
        dask = train_lead_conversion(funnel, seed=args.seed, boosting=boosting)
        dask_seconds = time.perf_counter() - started
        same_slice = np.array_equal(single.evaluation_lead_ids, dask.evaluation_lead_ids)
        single_auc = single.metrics["lightgbm"]["roc_auc"]
        dask_auc = dask.metrics["lightgbm"]["roc_auc"]
        params = dask.candidates["lightgbm"].params
        print(f"\nlead-conversion on {args.leads:,} synthetic leads (seed {args.seed})")
        print(
            f"  evaluation slice: {single.split} "
            f"({single.rows['test']:,} leads, same: {same_slice})"
        )
        print(
            f"  single machine: ROC-AUC {single_auc:.4f}, {single_seconds:.1f} s (all candidates)"
        )
        print(
            f"  dask ({len(cluster.workers)} workers): ROC-AUC {dask_auc:.4f}, {dask_seconds:.1f} s"
        )
        print(f"  difference: {dask_auc - single_auc:+.4f} (target: within 0.01)")
        print(f"  training rows by worker: {boosting.rows_by_worker}")
        print(f"  rounds: best {params['fold_iterations'][0]}, final trees {params['trees'][0]}")

        models, _ = fit_models(funnel, ("deal-cycle", "deal-value"), seed=args.seed, threads=1)
        scorer = LeadScorer(single.champion, models.get("deal-cycle"), models.get("deal-value"), {})
        leads = funnel.leads.sample(
            min(args.score_leads, len(funnel.leads)), random_state=args.seed
        )
        leads = leads[["lead_id", "created_at", *funnel.features]].reset_index(drop=True)
        parts = work / "leads"
        parts.mkdir()
        for index, rows in enumerate(np.array_split(np.arange(len(leads)), 8)):
            leads.iloc[rows].to_parquet(parts / f"part-{index}.parquet", index=False)
        leads.to_parquet(work / "leads.parquet", index=False)
        options = BatchOptions(str)
        started = time.perf_counter()
        score_file(scorer, work / "leads.parquet", work / "single.parquet", options)
        single_seconds = time.perf_counter() - started
        started = time.perf_counter()
        score_parquet_dask(cluster, scorer, parts, work / "scores", options)
        dask_seconds = time.perf_counter() - started
        expected = pd.read_parquet(work / "single.parquet").sort_values("lead_id")
        got = scores_frame(work / "scores").sort_values("lead_id")
        numeric = expected.select_dtypes("number").columns
        gap = np.nanmax(np.abs(got[numeric].to_numpy() - expected[numeric].to_numpy()))
        same_text = (
            got[["lead_id", "grade"]].to_numpy() == expected[["lead_id", "grade"]].to_numpy()
        ).all()
        print(f"\nscoring {len(leads):,} leads (8 Parquet files)")
        print(f"  single machine (score_file): {single_seconds:.1f} s")
        print(f"  dask (score_parquet_dask): {dask_seconds:.1f} s")
        print(f"  largest difference in any number: {gap:.3g}; ids and grades equal: {same_text}")
    print(f"\nload average after: {_load()}")


if __name__ == "__main__":
    main()
