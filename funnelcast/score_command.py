"""`funnelcast score`: batch scoring of a leads file with the champion models."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from funnelcast.cli_support import err, friendly_errors, load_settings
from funnelcast.render import neutralise_formula
from scoring.batch_input import CHUNK_ROWS, LeadsFile
from scoring.batch_score import (
    BatchOptions,
    BatchSummary,
    score_file,
    score_mapped,
    scorer_from_champions,
)
from scoring.champions import SCORING_MODELS, compile_scorer, load_champions
from scoring.dask_cluster import DEFAULT_LOCAL_WORKERS, dask_client
from scoring.errors import FunnelcastInputError
from scoring.lead_scores import LeadScorer
from scoring.mapping_spec import load_mapping
from scoring.predict_threads import set_predict_threads
from scoring.settings import Settings


@friendly_errors
def score(
    out_file: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Scores file to write, .csv or .parquet: lead_id, probability, score, grade, "
            "percentile, expected_days_to_close, p_won_30d, p_won_90d, expected_value and its "
            "_p10 and _p90. Rejected rows go to <out>.rejects.csv next to it.",
        ),
    ],
    in_file: Annotated[
        Path | None,
        typer.Option(
            "--in",
            help="Canonical leads file, .csv or .parquet (streamed in chunks). With --mapping: "
            "a file that replaces the mapping's main table.",
        ),
    ] = None,
    mapping: Annotated[
        str | None,
        typer.Option(
            help="Read a raw export through this mapping (built-in name or YAML file), exactly "
            "as ingest does. The mapping runs in memory; scoring still goes in chunks."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="With --mapping: the folder of the export's files."),
    ] = None,
    explain: Annotated[
        bool, typer.Option(help="Add `reasons` (JSON text): the top factors of each score.")
    ] = False,
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", min=1, help="Leads read and written at a time.")
    ] = CHUNK_ROWS,
    threads: Annotated[
        int, typer.Option(min=0, help="Threads the models predict with (0: every core).")
    ] = 0,
    engine: Annotated[
        Literal["local", "dask"],
        typer.Option(
            help="dask: score partitioned Parquet (--in: a .parquet file or a folder of them) "
            "into partitioned Parquet (--out: a folder of part-NNNNN.parquet) on a Dask cluster."
        ),
    ] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="With --engine dask: address of an existing Dask scheduler; without it a "
            "local cluster starts on 127.0.0.1."
        ),
    ] = None,
    dask_workers: Annotated[
        int, typer.Option("--dask-workers", min=1, help="Workers of the local Dask cluster.")
    ] = DEFAULT_LOCAL_WORKERS,
) -> None:
    """Score leads with the champion models: a canonical leads file, or an export via --mapping.

    Rows without a lead_id, with a lead_id on several rows, or with a created_at that is no date
    go to the rejects file; the rest are scored. Text in a numeric attribute counts as not given.
    """
    if engine == "dask":
        _score_on_dask(out_file, in_file, mapping, explain, scheduler, dask_workers)
        return
    if scheduler is not None:
        raise FunnelcastInputError("--scheduler goes with --engine dask")
    _check_arguments(out_file, in_file, mapping, data_dir)
    if mapping is None and in_file is not None:
        LeadsFile(in_file, chunk_rows)  # an unreadable file fails before the models load
    settings = load_settings()
    scorer = _champion_scorer(settings)
    compile_scorer(scorer, settings.compiled_cache)
    set_predict_threads(threads or os.cpu_count() or 1)
    with _progress() as (on_total, advance):
        options = BatchOptions(neutralise_formula, explain, chunk_rows, advance, on_total)
        if mapping is not None:
            folder = data_dir or (in_file.parent if in_file else Path())
            summary = score_mapped(
                scorer, load_mapping(mapping), folder, out_file, options, in_path=in_file
            )
        elif in_file is not None:
            summary = score_file(scorer, in_file, out_file, options)
    _print_summary(summary, scorer)


def _champion_scorer(settings: Settings) -> LeadScorer:
    """The scorer of the champions (registry, else local copies), warning when degraded."""
    champions = load_champions(settings.tracking_uri, settings.models_dir, SCORING_MODELS)
    for problem in champions.degraded:
        err.print(f"[yellow]warning:[/yellow] {problem}", highlight=False)
    return scorer_from_champions(champions)


def _score_on_dask(
    out_file: Path,
    in_file: Path | None,
    mapping: str | None,
    explain: bool,
    scheduler: str | None,
    workers: int,
) -> None:
    """`score --engine dask`: Parquet partitions in, Parquet partitions out, on a cluster."""
    from scoring.batch_score_dask import check_output_folder, input_files, score_parquet_dask

    if mapping is not None:
        raise FunnelcastInputError(
            "--mapping runs on one machine; ingest the export (or score it without --engine "
            "dask) first"
        )
    if in_file is None:
        raise FunnelcastInputError("--engine dask needs --in: a .parquet file or a folder of them")
    input_files(in_file)
    check_output_folder(out_file)
    settings = load_settings()
    scorer = _champion_scorer(settings)
    with dask_client(scheduler, workers) as cluster, _progress() as (on_total, advance):
        err.print(
            f"Dask: {len(cluster.workers)} workers "
            f"({'local, 127.0.0.1' if cluster.local else scheduler})",
            highlight=False,
        )
        options = BatchOptions(neutralise_formula, explain, CHUNK_ROWS, advance, on_total)
        summary = score_parquet_dask(
            cluster, scorer, in_file, out_file, options, settings.compiled_cache
        )
    _print_summary(summary, scorer)


@contextmanager
def _progress() -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """A progress bar on stderr (when it is a terminal): (set the total, advance by rows)."""
    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task("scoring", total=None)

        def on_total(total: int) -> None:
            bar.update(task, total=total)

        def advance(rows: int) -> None:
            bar.advance(task, rows)

        yield on_total, advance


def _check_arguments(
    out_file: Path, in_file: Path | None, mapping: str | None, data_dir: Path | None
) -> None:
    if mapping is None and in_file is None:
        raise FunnelcastInputError("give the leads with --in FILE, or an export with --mapping")
    if mapping is None and data_dir is not None:
        raise FunnelcastInputError("--data-dir goes with --mapping")
    if mapping is not None and in_file is None and data_dir is None:
        raise FunnelcastInputError("--mapping needs --data-dir (the export's folder), or --in")
    if out_file.suffix.lower() not in (".csv", ".parquet"):
        raise FunnelcastInputError(f"--out {out_file}: use a .csv or .parquet file name")
    if in_file is not None and in_file.resolve() == out_file.resolve():
        raise FunnelcastInputError("--out must not be the --in file")
    if not out_file.resolve().parent.is_dir():
        raise FunnelcastInputError(f"--out {out_file}: the folder does not exist")


def _print_summary(summary: BatchSummary, scorer: LeadScorer) -> None:
    for report in summary.reports:
        err.print(f"  {report.line()}", highlight=False)
    for note in summary.notes:
        err.print(f"note: {note}", highlight=False)
    versions = ", ".join(
        f"{name} v{scorer.versions[name]}" if name in scorer.versions else f"{name} (none)"
        for name in SCORING_MODELS
    )
    err.print(f"models: {versions}", highlight=False)
    err.print(f"scored {summary.scored:,} leads → {summary.out}", highlight=False)
    if summary.rejects is None:
        err.print("rejected 0 rows", highlight=False)
    else:
        err.print(
            f"rejected {summary.rejected:,} rows → {summary.rejects} (line, lead_id, reason)",
            highlight=False,
        )
