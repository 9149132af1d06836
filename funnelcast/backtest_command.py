"""`funnelcast backtest`: replay past cutoffs and score the forecast against what happened."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import typer

from funnelcast import code_version
from funnelcast.cli_support import err, load_funnel, load_settings, parse_date, parse_segment
from scoring.errors import FunnelcastInputError
from scoring.kpis import KPI_IDS


def _cutoffs(text: str) -> list[date]:
    days = []
    for part in text.split(","):
        day = parse_date(part.strip(), "--cutoffs")
        if day is None:
            raise FunnelcastInputError("--cutoffs: an empty date in the list")
        days.append(day)
    if len(set(days)) != len(days):
        raise FunnelcastInputError("--cutoffs: a date is listed twice")
    return days


def backtest_command(
    cutoffs: Annotated[str, typer.Option(help="Cutoff days, comma-separated: D1,D2,...")],
    freq: Annotated[Literal["week", "month", "quarter"], typer.Option(help="Period length.")] = (
        "month"
    ),
    periods: Annotated[int, typer.Option(min=1, max=24, help="Periods after each cutoff.")] = 1,
    kpis: Annotated[
        str, typer.Option(help=f"Comma-separated KPIs, of: {', '.join(KPI_IDS)}.")
    ] = "won_revenue,won_deals,lead_count,win_rate",
    segment: Annotated[
        list[str] | None, typer.Option(help="Filter key=value (repeatable), e.g. region=Nordics.")
    ] = None,
    draws: Annotated[int, typer.Option(min=100, max=100_000, help="Monte Carlo draws.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    output_format: Annotated[
        Literal["table", "json"], typer.Option("--format", help="Output format.")
    ] = "table",
    out_file: Annotated[Path | None, typer.Option("--out", help="Write to a file.")] = None,
    mapping: Annotated[
        str | None, typer.Option(help="Read a data set through this mapping instead of the store.")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="With --mapping.")] = None,
) -> None:
    """Rebuild the funnel at each cutoff, refit, forecast, and compare with the actuals and the
    baselines (weighted pipeline, run-rate, seasonal naive). Logged as an MLflow run."""
    from training.backtest import BacktestSettings, log_backtest, run_backtest
    from training.backtest_report import backtest_json, backtest_table
    from training.tracking import configure as configure_tracking

    settings = load_settings()
    days = _cutoffs(cutoffs)
    wanted = tuple(k.strip() for k in kpis.split(",") if k.strip())
    unknown = [k for k in wanted if k not in KPI_IDS]
    if unknown:
        raise FunnelcastInputError(
            f"--kpis: unknown {', '.join(unknown)}; forecast KPIs: {', '.join(KPI_IDS)}"
        )
    funnel = load_funnel(settings, mapping, data_dir)
    options = BacktestSettings(
        freq=freq,
        periods=periods,
        kpis=wanted,
        segment=parse_segment(segment) or None,
        draws=draws,
        seed=seed,
    )
    backtest = run_backtest(funnel, days, options, progress=lambda line: err.print(line))
    runs, notes = backtest.runs, backtest.notes
    configure_tracking(settings)
    run_id = log_backtest(runs, days, options, f"{funnel.name} ({code_version()})")
    text = (
        backtest_table(runs)
        if output_format == "table"
        else json.dumps(backtest_json(runs), indent=2) + "\n"
    )
    if out_file:
        out_file.write_text(text, encoding="utf-8")
        err.print(f"wrote {out_file}")
    else:
        typer.echo(text, nl=False)
    for note in sorted(set(notes)):
        err.print(f"note: {note}")
    err.print(f"logged as MLflow run {run_id}")
