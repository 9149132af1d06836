"""Batch scoring on a Dask cluster: partitioned Parquet in, partitioned Parquet out.

`funnelcast score --engine dask --in LEADS --out FOLDER`. The workers read the input's partitions
themselves, check and score each with the same `RowChecks` and `LeadScorer` as single-machine
scoring, and write `part-NNNNN.parquet` (one per input partition, the DESIGN §7 columns) into a
temporary folder beside `FOLDER`, renamed to it at the end. Only the rejected rows come back to
this process, into `<FOLDER>.rejects.csv`, one partition at a time. Duplicate ids are found by the
workers too (hashes counted per partition, only the repeated ones come back).

`line` in the rejects file is the row's position in the input (1-based, files in name order).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from scoring.batch_input import DuplicateIds, RowChecks, identifier
from scoring.batch_output import RejectsWriter, ScoresWriter, rejects_path
from scoring.batch_score import BatchOptions, BatchSummary, scores_of, timing_scorer
from scoring.champions import compile_scorer
from scoring.dask_cluster import Cluster
from scoring.errors import DataContractError, FunnelcastInputError, Problem
from scoring.lead_scores import LeadScorer
from scoring.predict_threads import set_predict_threads
from scoring.tables import SOURCE_LINE

PART_PREFIX = "part-"


def input_files(source: Path) -> list[Path]:
    """The Parquet files of `source`: the file itself, or a folder's `*.parquet` (recursively,
    in name order, as `dask.dataframe.read_parquet` reads them).

    Raises:
        FunnelcastInputError: no such file or folder, a file that is not Parquet, or a folder
            without Parquet files.
    """
    if source.is_file():
        if source.suffix.lower() != ".parquet":
            raise FunnelcastInputError(
                f"--in {source}: --engine dask reads Parquet (a .parquet file or a folder of them)"
            )
        return [source]
    if not source.is_dir():
        raise FunnelcastInputError(f"--in {source}: no such file or folder")
    files = sorted(p for p in source.rglob("*.parquet") if p.is_file())
    if not files:
        raise FunnelcastInputError(f"--in {source}: the folder holds no .parquet files")
    return files


def check_output_folder(out: Path) -> None:
    """`out` may be new, or a folder of an earlier run's `part-*.parquet` (replaced at the end).

    Raises:
        FunnelcastInputError: `out` is a file, a folder holding anything else, or its parent
            folder does not exist.
    """
    if not out.resolve().parent.is_dir():
        raise FunnelcastInputError(f"--out {out}: the folder it would go in does not exist")
    if out.is_file():
        raise FunnelcastInputError(
            f"--out {out}: is a file; --engine dask writes a folder of Parquet parts"
        )
    if out.is_dir():
        others = [p.name for p in out.iterdir() if not _is_part(p)]
        if others:
            raise FunnelcastInputError(
                f"--out {out}: the folder holds other files ({', '.join(sorted(others)[:3])}); "
                "give a new folder or one of an earlier --engine dask run"
            )


def _is_part(path: Path) -> bool:
    return path.is_file() and path.name.startswith(PART_PREFIX) and path.suffix == ".parquet"


def _columns(files: list[Path]) -> list[str]:
    try:
        return list(pq.read_schema(files[0]).names)
    except (OSError, ValueError) as error:
        raise DataContractError(
            str(files[0]), [Problem(f"cannot be read as Parquet ({error})")]
        ) from None


def _id_hashes(ids: pd.Series) -> pd.Series:
    present = identifier(ids).dropna()
    return pd.Series(
        pd.util.hash_array(present.to_numpy(dtype=object)), dtype="uint64", name="hash"
    )


@dataclass(frozen=True)
class _Part:
    index: int
    first_line: int
    target: Path
    compiled_cache: Path | None  # compile the scorer's trees on the worker (cached there)


def _score_partition(
    raw: pd.DataFrame, scorer: LeadScorer, checks: RowChecks, part: _Part, explain: bool
) -> tuple[int, pd.DataFrame]:
    """On a worker: check, score and write one partition; its scored count and rejects."""
    set_predict_threads(1)  # one thread per worker process: the cluster is the parallelism
    compile_scorer(scorer, part.compiled_cache)  # once per worker process; then a no-op
    raw = raw.reset_index(drop=True)
    raw[SOURCE_LINE] = np.arange(part.first_line, part.first_line + len(raw))
    leads, rejects = checks.split(raw)
    if len(leads):
        writer = ScoresWriter(part.target, explain, str)
        try:
            writer.write(scores_of(scorer, leads, explain))
            writer.close()
        except BaseException:
            writer.discard()
            raise
        writer.commit()
    return len(leads), rejects


def score_parquet_dask(
    cluster: Cluster,
    scorer: LeadScorer,
    source: Path,
    out: Path,
    options: BatchOptions,
    compiled_cache: Path | None = None,
) -> BatchSummary:
    """Score the Parquet leads at `source` (a file or a folder of files) into the folder `out`
    on the cluster (see the module docstring). Both must be reachable by every worker under
    these paths. With `compiled_cache`, each worker compiles the scorer's trees once
    (`scoring.compiled_trees`), through that shared cache.

    Raises:
        DataContractError: the input cannot be read, or has no lead_id column.
        FunnelcastInputError: bad paths, or no row could be scored (the rejects file says why).
    """
    import dask.dataframe as dd
    from dask import delayed
    from distributed import as_completed

    files = input_files(source)
    check_output_folder(out)
    columns = _columns(files)
    if "lead_id" not in columns:
        raise DataContractError(str(source), [Problem("there is no lead_id column")])
    notes: list[str] = []
    scorer = timing_scorer(scorer, "created_at" in columns, notes)
    client = cluster.client
    try:
        leads = dd.read_parquet([str(f) for f in files], columns=None)
        repeated = (
            leads["lead_id"].map_partitions(_id_hashes, meta=("hash", "uint64")).value_counts()
        )
        repeated = repeated[repeated > 1].compute()
        lengths = leads.map_partitions(len).compute().to_numpy()
    except (OSError, ValueError) as error:
        raise DataContractError(str(source), [Problem(f"cannot be read ({error})")]) from None
    order = np.argsort(repeated.index.to_numpy(dtype=np.uint64))
    duplicates = DuplicateIds(
        repeated.index.to_numpy(dtype=np.uint64)[order],
        repeated.to_numpy(dtype=np.int64)[order],
    )
    checks = RowChecks.for_scorer(scorer, duplicates)
    wanted = [c for c in checks.columns if c in columns]
    if options.on_total is not None:
        options.on_total(int(lengths.sum()))
    staging = out.with_name(f".{out.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    rejects = RejectsWriter(rejects_path(out), options.text_cell)
    scored = 0
    try:
        remote_scorer = client.scatter(scorer, broadcast=True, hash=False)
        first_lines = 1 + np.concatenate([[0], np.cumsum(lengths)[:-1]])
        tasks = [
            delayed(_score_partition)(
                raw,
                remote_scorer,
                checks,
                _Part(
                    i,
                    int(first_lines[i]),
                    staging / f"{PART_PREFIX}{i:05d}.parquet",
                    compiled_cache,
                ),
                options.explain,
            )
            for i, raw in enumerate(leads[wanted].to_delayed())
        ]
        for future in as_completed(client.compute(tasks)):
            count, rejected = future.result()
            future.release()
            scored += count
            rejects.write(rejected)
            if options.progress is not None:
                options.progress(count + len(rejected))
    except BaseException:
        rejects.discard()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    rejects.commit()
    where = rejects.target if rejects.rows else None
    if scored == 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise FunnelcastInputError(
            "no lead could be scored: the input has no leads"
            if rejects.rows == 0
            else f"no lead could be scored: all {rejects.rows:,} rows were rejected; see {where}"
        )
    if out.exists():
        shutil.rmtree(out)
    staging.replace(out)
    return BatchSummary(scored, rejects.rows, out, where, notes)


def scores_frame(out: Path) -> pd.DataFrame:
    """The scores a Dask run wrote to `out`, as one frame (for tests and small outputs)."""
    parts = sorted(p for p in out.iterdir() if _is_part(p))
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
