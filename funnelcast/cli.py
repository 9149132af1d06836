"""The `funnelcast` command line."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import typer
from rich.console import Console

from funnelcast import code_version
from funnelcast.backtest_command import backtest_command
from funnelcast.cli_support import (
    err,
    friendly_errors,
    load_funnel,
    load_settings,
    open_store,
    out,
    parse_date,
    parse_segment,
)
from funnelcast.forecast_command import forecast_command
from funnelcast.goals_command import goals_app
from funnelcast.goals_report_command import report as goals_report
from funnelcast.keys_command import keys_app
from funnelcast.render import print_table, records_to_csv, records_to_json
from funnelcast.score_command import score
from funnelcast.serve_command import serve
from scoring.contract import read_canonical
from scoring.dask_cluster import DEFAULT_LOCAL_WORKERS, dask_client
from scoring.errors import FunnelcastInputError
from scoring.funnel import Funnel
from scoring.kpis import compute_kpis, kpi_records, overall_kpis
from scoring.mapping import MappedData, apply_mapping
from scoring.mapping_spec import load_mapping
from scoring.registry import ModelReference
from scoring.settings import Settings
from scoring.snapshot import funnel_as_of
from scoring.store import IngestSummary
from scoring.synthetic import generate_funnel, write_funnel
from scoring.tables import redact_url

app = typer.Typer(
    name="funnelcast",
    help="Self-hosted lead scoring and pipeline forecasting for B2B sales teams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(keys_app, name="keys")
goals_app.command("report")(friendly_errors(goals_report))
app.add_typer(goals_app, name="goals")
app.command("forecast")(friendly_errors(forecast_command))
app.command("backtest")(friendly_errors(backtest_command))
app.command("serve")(serve)


@app.command()
@friendly_errors
def generate(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the tables to.")],
    leads: Annotated[int, typer.Option("--leads", min=1, help="Number of leads.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
    end: Annotated[str | None, typer.Option(help="Extraction date YYYY-MM-DD.")] = None,
    file_format: Annotated[
        Literal["parquet", "csv"], typer.Option("--format", help="Table file format.")
    ] = "parquet",
) -> None:
    """Write a synthetic B2B funnel with known ground truth (truth.parquet)."""
    funnel = generate_funnel(leads, seed=seed, end=parse_date(end, "--end"))
    paths = write_funnel(funnel, out_dir, file_format=file_format)
    for path in paths:
        out.print(f"wrote {path}")


def _print_ingest(summary: IngestSummary, mapped: MappedData | None) -> None:
    if mapped is not None:
        out.print(
            f"read {mapped.source_rows:,} source rows, "
            f"{len(mapped.funnel.leads):,} leads after the mapping's rules"
        )
    for report in summary.rules:
        out.print(f"  {report.line()}", highlight=False)
    out.print(
        f"leads: {summary.leads_new:,} new, {summary.leads_updated:,} updated, "
        f"{summary.leads_unchanged:,} unchanged; stage events: {summary.stage_events_new:,} new; "
        f"customers: {summary.customers_new:,} new, {summary.customers_updated:,} updated, "
        f"{summary.customers_unchanged:,} unchanged"
    )


@app.command()
@friendly_errors
def ingest(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="Folder with the data files.")],
    mapping: Annotated[
        str | None,
        typer.Option(help="Built-in mapping name (x_education, olist, maven) or a YAML file."),
    ] = None,
    replace: Annotated[bool, typer.Option(help="Empty the store first.")] = False,
    dated: Annotated[
        bool, typer.Option("--dated/--undated", help="Canonical tables without dates: --undated.")
    ] = True,
) -> None:
    """Load a data set into the funnel store (canonical tables, or any export via --mapping)."""
    settings = load_settings()
    mapped: MappedData | None = None
    if mapping is None:
        funnel = read_canonical(data_dir, dated=dated)
        rules = []
    else:
        mapped = apply_mapping(load_mapping(mapping), data_dir)
        funnel, rules = mapped.funnel, mapped.reports
    store = open_store(settings)
    try:
        summary = store.ingest(funnel, source=str(data_dir), rules=rules, replace=replace)
    finally:
        store.close()
    _print_ingest(summary, mapped)


@app.command()
@friendly_errors
def kpis(
    freq: Annotated[Literal["week", "month", "quarter"], typer.Option(help="Period length.")] = (
        "month"
    ),
    from_: Annotated[str | None, typer.Option("--from", help="First date YYYY-MM-DD.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="Last date YYYY-MM-DD.")] = None,
    segment: Annotated[
        list[str] | None, typer.Option(help="Filter key=value (repeatable), e.g. region=Nordics.")
    ] = None,
    output_format: Annotated[
        Literal["table", "csv", "json"], typer.Option("--format", help="Output format.")
    ] = "table",
    out_file: Annotated[Path | None, typer.Option("--out", help="Write to a file.")] = None,
) -> None:
    """Funnel KPIs per period from the store (DESIGN §2)."""
    settings = load_settings()
    store = open_store(settings)
    try:
        funnel = store.load()
    finally:
        store.close()
    filters = parse_segment(segment)
    if funnel.dated:
        frame = compute_kpis(
            funnel, freq, parse_date(from_, "--from"), parse_date(to, "--to"), filters
        )
        title = f"{funnel.name}: KPIs per {freq}"
    else:
        err.print(
            "this data set has no dates: showing one overall row; per-period and "
            "time-based KPIs need dated data"
        )
        frame = overall_kpis(funnel, filters)
        title = f"{funnel.name}: KPIs over all data"
    records = kpi_records(frame)
    columns = [str(c) for c in frame.columns]
    _emit(records, columns, output_format, out_file, title)


def _emit(
    records: list[dict[str, Any]],
    columns: list[str],
    output_format: str,
    out_file: Path | None,
    title: str,
) -> None:
    if output_format == "table":
        console = Console(file=out_file.open("w"), width=250) if out_file else Console(width=250)
        print_table(records, columns, title, console)
        return
    text = records_to_csv(records, columns) if output_format == "csv" else records_to_json(records)
    if out_file:
        out_file.write_text(text, encoding="utf-8")
        err.print(f"wrote {out_file}")
    else:
        sys.stdout.write(text)


MappingOption = Annotated[
    str | None, typer.Option(help="Read a data set through this mapping instead of the store.")
]
DataDirOption = Annotated[Path | None, typer.Option("--data-dir", help="With --mapping.")]
SchedulerOption = Annotated[
    str | None,
    typer.Option(
        help="With --engine dask: address of an existing Dask scheduler (tcp://host:8786); "
        "without it a local cluster starts on 127.0.0.1."
    ),
]
DaskWorkersOption = Annotated[
    int, typer.Option("--dask-workers", min=1, help="Workers of the local Dask cluster.")
]
EXIT_GATE_REFUSED = 3


@app.command()
@friendly_errors
def train(
    models: Annotated[
        str | None, typer.Option(help="Comma-separated models (default: all of DESIGN §4).")
    ] = None,
    cutoff: Annotated[
        str | None, typer.Option(help="Train on the funnel as it stood at this date.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    tune: Annotated[bool, typer.Option(help="Time-budgeted hyper-parameter search.")] = False,
    promote: Annotated[bool, typer.Option(help="Run the gate and move champion.")] = False,
    horizon_days: Annotated[
        int | None,
        typer.Option(min=1, help="Conversion horizon in days (default: the data set's)."),
    ] = None,
    mapping: MappingOption = None,
    data_dir: DataDirOption = None,
    engine: Annotated[
        Literal["local", "dask"],
        typer.Option(
            help="dask: fit lead-conversion's LightGBM on a Dask cluster (the other models and "
            "the baselines train here)."
        ),
    ] = "local",
    scheduler: SchedulerOption = None,
    dask_workers: DaskWorkersOption = DEFAULT_LOCAL_WORKERS,
    dask_dir: Annotated[
        Path | None,
        typer.Option(
            "--dask-dir",
            help="With --engine dask: folder for the partitioned Parquet, readable by every "
            "worker under the same path (default: <home>/dask-work).",
        ),
    ] = None,
) -> None:
    """Fit, evaluate, log and register the models; with --promote, run the quality gate."""
    from funnelcast.training_report import print_training_report
    from training.pipeline import parse_model_names, train_models
    from training.tracking import configure as configure_tracking

    settings = load_settings()
    names = parse_model_names(models)
    if engine == "local" and (scheduler or dask_dir):
        raise FunnelcastInputError("--scheduler and --dask-dir go with --engine dask")
    if engine == "dask" and tune:
        raise FunnelcastInputError("--tune runs on one machine only; leave it out with a cluster")
    with ExitStack() as stack:
        boosting = None
        if engine == "dask" and "lead-conversion" in names:
            from training.lead_conversion_dask import DaskBoosting

            # The cluster first: an unreachable scheduler fails before the data is loaded.
            cluster = stack.enter_context(dask_client(scheduler, dask_workers))
            where = "local, 127.0.0.1" if cluster.local else scheduler
            err.print(f"Dask: {len(cluster.workers)} workers ({where})", highlight=False)
            boosting = DaskBoosting(cluster, dask_dir or settings.home / "dask-work")
        funnel = load_funnel(settings, mapping, data_dir)
        tags = {"code_version": code_version()}
        if boosting is not None:
            tags["engine"] = "dask"
        if horizon_days is not None:
            funnel = funnel.with_tables(horizon_days=horizon_days)
            tags["horizon_days"] = str(horizon_days)
        if cutoff is not None:
            day = parse_date(cutoff, "--cutoff")
            end_of_day = pd.Timestamp(str(day)) + pd.Timedelta(days=1) - pd.Timedelta(1)
            funnel = funnel_as_of(funnel, end_of_day)
            tags["cutoff"] = cutoff
        configure_tracking(settings)
        outcomes = train_models(
            funnel, names, seed=seed, tune=tune, promote=promote, extra_tags=tags,
            boosting=boosting,
        )  # fmt: skip
        if boosting is not None:
            err.print(f"Dask: training rows by worker {boosting.rows_by_worker}", highlight=False)
    print_training_report(outcomes, out)


@app.command()
@friendly_errors
def evaluate(
    model: Annotated[str, typer.Argument(help="NAME, NAME@alias or NAME/version.")],
    output_format: Annotated[
        Literal["table", "json"], typer.Option("--format", help="Output format.")
    ] = "table",
    seed: Annotated[int, typer.Option(help="Seed of the evaluation split (undated data).")] = 0,
    mapping: MappingOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Evaluate a registered model on the store's data (or a mapped data set)."""
    from funnelcast.training_report import print_evaluation
    from training.pipeline import evaluate_reference
    from training.tracking import configure as configure_tracking

    settings = load_settings()
    reference = ModelReference.parse(model)
    funnel = load_funnel(settings, mapping, data_dir)
    configure_tracking(settings)
    version, evaluation = evaluate_reference(reference, funnel, seed=seed)
    report = {
        "model": reference.name,
        "version": version,
        "split": evaluation.split,
        "metrics": evaluation.metrics,
        "baselines": evaluation.baselines,
    }
    if output_format == "json":
        sys.stdout.write(json.dumps(report, indent=2, default=float) + "\n")
    else:
        print_evaluation(report, out)


@app.command()
@friendly_errors
def promote(
    model: Annotated[str, typer.Argument(help="NAME/version of the candidate.")],
    force: Annotated[bool, typer.Option(help="Promote even if the gate refuses.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why, with --force (recorded).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the evaluation split (undated data).")] = 0,
    mapping: MappingOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """The quality gate: move `champion` to a version only if it is not worse (exit 3 if not)."""
    from training.pipeline import gate, set_champion
    from training.tracking import configure as configure_tracking

    reference = ModelReference.parse(model)
    if reference.version is None:
        raise FunnelcastInputError("promote takes NAME/version, e.g. lead-conversion/4")
    if force and not reason:
        raise FunnelcastInputError("--force needs --reason TEXT, recorded with the version")
    settings = load_settings()
    funnel = load_funnel(settings, mapping, data_dir)
    configure_tracking(settings)
    decision = gate(reference.name, reference.version, funnel, seed=seed)
    out.print(decision.explain(), highlight=False)
    if decision.passed:
        set_champion(reference.name, reference.version)
        out.print(f"champion → {reference}")
        return
    if force:
        set_champion(reference.name, reference.version, reason=reason)
        out.print(f"champion → {reference} (forced: {reason})")
        return
    raise typer.Exit(EXIT_GATE_REFUSED)


app.command("score")(score)


@app.command()
@friendly_errors
def demo(
    leads: Annotated[int, typer.Option(help="Synthetic leads to generate.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
    months: Annotated[int, typer.Option(help="Months of KPIs to print.")] = 12,
    train: Annotated[bool, typer.Option(help="Also train and promote the models.")] = True,
    serve: Annotated[
        bool, typer.Option(help="End by starting the API on 127.0.0.1 with a demo key.")
    ] = True,
    port: Annotated[int, typer.Option(help="Port for the API.", min=1, max=65535)] = 8000,
) -> None:
    """The main job on the embedded default: synthetic funnel → store → KPIs → models → API."""
    settings = load_settings()
    data_dir = settings.home / "demo-data"
    out.rule("1. generate a synthetic funnel")
    funnel = generate_funnel(leads, seed=seed)
    for path in write_funnel(funnel, data_dir):
        out.print(f"wrote {path}")
    out.rule(f"2. ingest into the funnel store ({redact_url(settings.store_url)})")
    canonical = read_canonical(data_dir)
    store = open_store(settings)
    try:
        summary = store.ingest(canonical, source=str(data_dir), replace=True)
        stored = store.load()
    finally:
        store.close()
    _print_ingest(summary, None)
    out.rule(f"3. monthly KPIs, last {months} months")
    frame = compute_kpis(stored, "month").tail(months)
    core = [c for c in frame.columns if not str(c).startswith("stage_conversion.")]
    print_table(
        kpi_records(frame[core]),
        [str(c) for c in core],
        "synthetic funnel: KPIs per month",
        Console(width=250),
    )
    out.print(
        "conversion_mature=false marks cohorts younger than the horizon: their rate is "
        "the rate so far.",
        style="dim",
    )
    if not train:
        return
    from funnelcast.training_report import print_training_report
    from scoring.registry import MODEL_NAMES
    from training.pipeline import train_models
    from training.tracking import configure as configure_tracking

    out.rule(
        f"4. train, evaluate and promote the models (MLflow: {redact_url(settings.tracking_uri)})"
    )
    configure_tracking(settings)
    outcomes = train_models(
        stored,
        list(MODEL_NAMES),
        seed=seed,
        promote=True,
        extra_tags={"code_version": code_version(), "demo": "true"},
    )
    print_training_report(outcomes, out)
    if serve:
        _serve_demo(settings, port, stored)


def _serve_demo(settings: Settings, port: int, stored: Funnel) -> None:
    """Step 5: a demo key, a ready-to-paste request, and the API itself."""
    import shlex

    from funnelcast.serve_command import prepare_environment, run_server
    from scoring.api_keys import create_key

    out.rule(f"5. the scoring API on http://127.0.0.1:{port}")
    store = open_store(settings)
    try:
        name = f"demo-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
        key = create_key(store.engine, "integration", name)
    finally:
        store.close()
    example = stored.leads.iloc[-1]
    attributes = {
        f: (example[f].item() if hasattr(example[f], "item") else example[f])
        for f in stored.features
        if pd.notna(example[f])
    }
    body = json.dumps(
        {"leads": [{"lead_id": "demo-lead-1", "attributes": attributes}], "explain": True}
    )
    out.print(f"demo API key (role integration, name {name}):\n{key}", highlight=False)
    out.print("score a lead (paste into another terminal):", style="bold")
    out.print(
        f"curl -s -X POST http://127.0.0.1:{port}/v1/leads/score "
        f"-H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' "
        f"-d {shlex.quote(body)}",
        highlight=False,
        soft_wrap=True,
    )
    out.print(
        f"API docs: http://127.0.0.1:{port}/docs   ·   stop the server with Ctrl+C",
        style="dim",
    )
    prepare_environment(settings)
    run_server("127.0.0.1", port, workers=1)


def main() -> None:
    app()
