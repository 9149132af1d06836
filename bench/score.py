"""Batch scoring throughput against the bare minimum, and its memory on a stream of 10M leads.

    .venv/bin/python bench/score.py [--leads 1000000] [--stream-leads 10000000] [--profile]

Trains lead-conversion, deal-cycle and deal-value once on a synthetic funnel (`--train-leads`)
in a throw-away FUNNELCAST_HOME, loads the champions as `funnelcast score` does, then measures:

(a) the batch path, `scoring.batch_score.score_file`, Parquet to Parquet, every DESIGN §7
    column without reasons: leads/s;
(b) the bare minimum for the same outputs: the feature codes and the deal-week rows (27 weeks
    a lead for a 180-day horizon) built in advance as float32 arrays, then one `predict` per
    underlying LightGBM booster over the full array with `num_threads=2` (lead-conversion, the
    deal-cycle's deal-score, closing and winning boosters, deal-value): leads/s, and (a)/(b)
    (target: at least 0.80);
(c) `funnelcast score` in a child process over a Parquet file of `--stream-leads` leads written
    in row groups: wall time and the child's peak RSS (target: under 2 GB).

Prints figures; it passes or fails nothing. `--profile` prints where (a) spends its time.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scoring.synthetic import generate_funnel

SCORING_MODELS = ["lead-conversion", "deal-cycle", "deal-value"]
THREADS = 2
WEEK_ROW_LEADS = 250_000
TARGET_RATIO = 0.80
TARGET_RSS_MB = 2048


def _train(train_leads: int) -> None:
    from scoring.settings import Settings
    from training.pipeline import train_models
    from training.tracking import configure

    started = time.perf_counter()
    funnel = generate_funnel(train_leads, seed=0).as_funnel()
    configure(Settings())
    for outcome in train_models(funnel, SCORING_MODELS, seed=0, promote=True):
        if outcome.status != "trained":
            raise SystemExit(f"{outcome.name} was not trained: {outcome.message}")
    print(f"trained on {train_leads:,} leads      {time.perf_counter() - started:8.1f} s")


def _load_scorer() -> Any:
    from scoring.batch_score import scorer_from_champions
    from scoring.champions import compile_scorer, load_champions
    from scoring.settings import Settings

    settings = Settings()
    champions = load_champions(settings.tracking_uri, settings.models_dir, SCORING_MODELS)
    scorer = scorer_from_champions(champions)
    compile_scorer(scorer, settings.compiled_cache)  # as `funnelcast score` does
    return scorer


def _write_leads(leads: pd.DataFrame, path: Path, copies: int = 1) -> None:
    """`leads` `copies` times as row groups of one Parquet file, ids made unique per copy."""
    table = pa.Table.from_pandas(leads, preserve_index=False)
    ids = leads["lead_id"].astype(str)
    with pq.ParquetWriter(path, table.schema) as writer:
        for copy in range(copies):
            if copies > 1:
                position = table.schema.get_field_index("lead_id")
                kind = table.schema.field(position).type
                renamed = pa.array((f"C{copy:02d}-" + ids).to_numpy(dtype=object), kind)
                table = table.set_column(position, "lead_id", renamed)
            writer.write_table(table, row_group_size=100_000)


def _batch_path(scorer: Any, source: Path, out: Path, profile: bool) -> float:
    from scoring.batch_score import BatchOptions, score_file

    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    summary = score_file(scorer, source, out, BatchOptions(text_cell=str))
    if profiler is not None:
        profiler.disable()
    seconds = time.perf_counter() - started
    assert summary.rejected == 0, summary
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    return seconds


class BareMinimum:
    """The boosters' predicts alone, over arrays built in advance (see the module docstring).

    The deal-week rows (27 a lead) are built in blocks of `WEEK_ROW_LEADS` leads and each
    block predicted in one call: the whole 1M-lead array would take 3 GB, and 4 calls instead
    of 1 over millions of rows cost nothing measurable."""

    def __init__(self, scorer: Any, leads: pd.DataFrame) -> None:
        from scoring.cycle import WEEK, created_ns

        self.scorer = scorer
        conversion, cycle, value = scorer.conversion, scorer.cycle, scorer.value
        design = cycle.design
        self.codes = conversion.feature_spec.codes(leads).astype(np.float32)
        spec = getattr(value, "feature_spec_", None) or conversion.feature_spec
        self.value_codes = spec.codes(leads).astype(np.float32)
        self.attributes = design.attribute_matrix(leads)
        deal_rows = design.deal_matrix(leads)  # attributes and deal scores, as week rows hold
        n_weeks = int(np.ceil(max(scorer.horizon_days, 90) / WEEK)) + 1
        created_day = np.floor_divide(created_ns(leads), 86_400 * 10**9)
        self.week_rows = []
        for begin in range(0, len(leads), WEEK_ROW_LEADS):
            count = min(WEEK_ROW_LEADS, len(leads) - begin)
            deal_index = np.repeat(np.arange(begin, begin + count), n_weeks)
            week = np.tile(np.arange(n_weeks), count)
            self.week_rows.append(design.rows(deal_rows, created_day, deal_index, week))
        rows = sum(len(block) for block in self.week_rows)
        width = self.week_rows[0].shape[1]
        print(f"bare minimum: {rows:,} deal-week rows x {width} float32 built in advance")

    def run(self) -> dict[str, float]:
        """Seconds of each model's predicts."""
        conversion, cycle, value = self.scorer.conversion, self.scorer.cycle, self.scorer.value
        seconds: dict[str, float] = {}

        def timed(name: str, booster: Any, data: np.ndarray, **extra: Any) -> None:
            started = time.perf_counter()
            booster.predict(data, num_threads=THREADS, **extra)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started

        for booster in getattr(conversion.scorer, "boosters", ()):
            timed("lead-conversion", booster, self.codes, raw_score=True)
        for boosters in cycle.design.deal_scores_.values():
            for booster in boosters:
                timed("deal-cycle deal scores", booster, self.attributes, raw_score=True)
        for block in self.week_rows:
            timed("deal-cycle closing", cycle.closing, block)
            timed("deal-cycle winning", cycle.winning, block)
        if getattr(value, "booster_", None) is not None:  # the segment median has no booster
            timed("deal-value", value.booster_, self.value_codes, num_iteration=value.n_trees_)
        return seconds


def _compare(
    scorer: Any, leads: pd.DataFrame, source: Path, home: Path, repeat: int, profile: bool
) -> None:
    """(a) and (b), `repeat` times interleaved, best of each: other work on a shared machine
    slows single runs."""
    bare = BareMinimum(scorer, leads)
    batch_runs, bare_runs = [], []
    for run in range(repeat):
        out = home / "scores.parquet"
        batch_runs.append(_batch_path(scorer, source, out, profile and run == 0))
        parts = bare.run()
        bare_runs.append(sum(parts.values()))
        print(
            f"run {run + 1}: batch path {batch_runs[-1]:7.2f} s, bare minimum "
            f"{bare_runs[-1]:7.2f} s (" + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()) + ")"
        )
    scored = pq.ParquetFile(home / "scores.parquet").metadata
    print(f"scores file: {scored.num_rows:,} rows, {scored.num_columns} columns")
    batch_rate, bare_rate = len(leads) / min(batch_runs), len(leads) / min(bare_runs)
    print(f"(a) batch path        {min(batch_runs):8.2f} s  {batch_rate:12,.0f} leads/s (best)")
    print(f"(b) bare minimum      {min(bare_runs):8.2f} s  {bare_rate:12,.0f} leads/s (best)")
    print(f"    ratio (a)/(b)     {batch_rate / bare_rate:8.2f}    (target >= {TARGET_RATIO})")


def _stream(source: Path, out: Path) -> tuple[float, float, str]:
    """`funnelcast score` in a child process: wall seconds, its peak RSS (MB), its stderr.

    The peak is the child's VmHWM, read from /proc while it runs: `ru_maxrss` would not do, as
    a child's starts from its parent's resident size at fork and survives the exec."""
    command = [sys.executable, "-m", "funnelcast", "score", "--in", str(source), "--out", str(out)]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as messages:
        child = subprocess.Popen(command, stderr=messages, text=True)
        peak_kb = 0
        while child.poll() is None:
            peak_kb = max(peak_kb, _high_water_kb(child.pid))
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        messages.seek(0)
        text = messages.read()
    if child.returncode != 0:
        raise SystemExit(f"funnelcast score failed ({child.returncode}):\n{text}")
    return seconds, peak_kb / 1024, text


def _high_water_kb(pid: int) -> int:
    """The peak resident size of a running process so far (Linux), 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--stream-leads", type=int, default=10_000_000, help="0: skip (c)")
    parser.add_argument("--train-leads", type=int, default=50_000)
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of (a) and (b), best kept; 0: skip them"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the first run of (a)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="funnelcast-bench-") as folder:
        home = Path(folder)
        os.environ["FUNNELCAST_HOME"] = str(home)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        os.environ.pop("FUNNELCAST_DATABASE_URL", None)
        from scoring.predict_threads import set_predict_threads

        _train(args.train_leads)
        scorer = _load_scorer()
        set_predict_threads(THREADS)
        started = time.perf_counter()
        leads = generate_funnel(args.leads, seed=1).leads
        source = home / "leads.parquet"
        _write_leads(leads, source)
        print(f"{args.leads:,} leads written           {time.perf_counter() - started:8.1f} s")

        if args.repeat:
            _compare(scorer, leads, source, home, args.repeat, args.profile)

        if args.stream_leads:
            copies = -(-args.stream_leads // len(leads))
            big = home / "stream.parquet"
            started = time.perf_counter()
            _write_leads(leads, big, copies)
            del leads
            rows = pq.ParquetFile(big).metadata.num_rows
            print(f"{rows:,} leads written in row groups {time.perf_counter() - started:8.1f} s")
            seconds, peak_mb, messages = _stream(big, home / "stream_scores.parquet")
            print(messages.strip())
            print(
                f"(c) funnelcast score  {seconds:8.1f} s  {rows / seconds:12,.0f} leads/s  "
                f"peak RSS {peak_mb:,.0f} MB  (target < {TARGET_RSS_MB:,} MB)"
            )


if __name__ == "__main__":
    main()
