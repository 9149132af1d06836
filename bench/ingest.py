"""Time ingesting a synthetic funnel into a fresh SQLite funnel store, then re-ingesting it.

    .venv/bin/python bench/ingest.py --leads 1000000

Prints the time to read and validate the canonical tables, to write them into the store, to
re-ingest the same data (nothing changes), and the peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from scoring.contract import read_canonical
from scoring.store import FunnelStore
from scoring.synthetic import generate_funnel, write_funnel


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        data_dir, home = Path(folder) / "data", Path(folder) / "home"
        write_funnel(generate_funnel(args.leads, seed=args.seed), data_dir)

        started = time.perf_counter()
        funnel = read_canonical(data_dir)
        read_s = time.perf_counter() - started

        store = FunnelStore.open(f"sqlite:///{home / 'funnel.db'}")
        started = time.perf_counter()
        first = store.ingest(funnel, source=str(data_dir))
        ingest_s = time.perf_counter() - started

        started = time.perf_counter()
        second = store.ingest(funnel, source=str(data_dir))
        again_s = time.perf_counter() - started

        started = time.perf_counter()
        loaded = store.load()
        load_s = time.perf_counter() - started
        store.close()
        size_mb = (home / "funnel.db").stat().st_size / 1e6

    events = 0 if funnel.stage_events is None else len(funnel.stage_events)
    customers = 0 if funnel.customers is None else len(funnel.customers)
    print(f"leads {len(funnel.leads):,}  stage events {events:,}  customers {customers:,}")
    print(f"read + validate        {read_s:7.1f} s")
    print(f"first ingest           {ingest_s:7.1f} s  ({first.leads_new:,} new leads)")
    print(f"read + ingest          {read_s + ingest_s:7.1f} s  (target: under 120 s for 1M leads)")
    print(f"same data again        {again_s:7.1f} s  ({second.leads_unchanged:,} unchanged)")
    print(f"load from store        {load_s:7.1f} s  ({len(loaded.leads):,} leads)")
    print(f"funnel.db              {size_mb:7.0f} MB")
    print(f"peak RSS               {_peak_rss_mb():7.0f} MB")


if __name__ == "__main__":
    main()
