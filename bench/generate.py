"""Benchmark of the synthetic funnel generator: wall time and peak memory of generate + write.

Usage: `python bench/generate.py [--leads N] [--out DIR] [--format parquet|csv] [--seed S]`.
Prints figures only; it passes or fails nothing.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import psutil

from scoring.synthetic import generate_funnel, write_funnel


def _peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux; psutil's current RSS guards platforms where it is not.
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    current = psutil.Process().memory_info().rss / 2**20
    return float(max(peak_kib / 1024, current))


def run(leads: int, out: Path, file_format: str, seed: int) -> None:
    """Generate and write one funnel, then print timings, peak RSS and sizes."""
    started = time.perf_counter()
    funnel = generate_funnel(leads, seed=seed)
    generated = time.perf_counter()
    paths = write_funnel(funnel, out, "csv" if file_format == "csv" else "parquet")
    written = time.perf_counter()
    print(f"leads={leads:,} seed={seed} format={file_format} out={out}")
    print(f"generate {generated - started:7.2f} s")
    print(f"write    {written - generated:7.2f} s")
    print(f"total    {written - started:7.2f} s")
    print(f"peak RSS {_peak_rss_mb():7.0f} MiB")
    for name, frame in (
        ("leads", funnel.leads),
        ("stage_events", funnel.stage_events),
        ("customers", funnel.customers),
        ("truth", funnel.truth),
    ):
        print(f"rows {name:<13}{len(frame):>12,}")
    outcomes = funnel.leads["outcome"].value_counts().to_dict()
    print("outcomes " + ", ".join(f"{k}={v:,}" for k, v in sorted(outcomes.items())))
    for path in paths:
        print(f"file {path.name:<22}{path.stat().st_size / 2**20:>9.1f} MiB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.out is not None:
        run(args.leads, args.out, args.format, args.seed)
        return
    with tempfile.TemporaryDirectory(prefix="funnelcast-bench-") as folder:
        run(args.leads, Path(folder), args.format, args.seed)


if __name__ == "__main__":
    main()
