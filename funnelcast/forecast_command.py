"""`funnelcast forecast`: KPI forecasts with P10/P50/P90 from the champions (DESIGN §5)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import typer
from rich.console import Console

from funnelcast.cli_support import (
    champion_forecast_models,
    dated_funnel,
    err,
    load_settings,
    parse_date,
    parse_segment,
)
from funnelcast.render import display_value, print_table, records_to_csv, records_to_json
from scoring.forecast import Forecast, forecast

_FIGURES = ("mean", "p10", "p50", "p90")
FORECAST_COLUMNS = ["period_start", "period_end", "kpi", "mean", "p10", "p50", "p90"]


def print_forecast(result: Forecast, output_format: str, out_file: Path | None) -> None:
    records = result.records()
    if output_format == "table":
        console = Console(file=out_file.open("w"), width=200) if out_file else Console(width=200)
        segment = f" for {result.segment}" if result.segment else ""
        title = f"forecast as of {result.timeline.as_of:%Y-%m-%d %H:%M}{segment}"
        shown = [
            {
                key: display_value(str(row["kpi"]), value) if key in _FIGURES else value
                for key, value in row.items()
            }
            for row in records
        ]
        print_table(shown, FORECAST_COLUMNS, title, console)
    else:
        text = (
            records_to_csv(records, FORECAST_COLUMNS)
            if output_format == "csv"
            else records_to_json(records)
        )
        if out_file:
            out_file.write_text(text, encoding="utf-8")
        else:
            typer.echo(text, nl=False)
    for note in result.notes:
        err.print(f"note: {note}")


def forecast_command(
    freq: Annotated[Literal["week", "month", "quarter"], typer.Option(help="Period length.")] = (
        "month"
    ),
    periods: Annotated[int, typer.Option(min=1, max=104, help="Periods to forecast.")] = 3,
    segment: Annotated[
        list[str] | None, typer.Option(help="Filter key=value (repeatable), e.g. region=Nordics.")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Forecast as of the end of this day (default: data end)."),
    ] = None,
    draws: Annotated[int, typer.Option(min=100, max=100_000, help="Monte Carlo draws.")] = 2000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same figures).")] = 0,
    output_format: Annotated[
        Literal["table", "json", "csv"], typer.Option("--format", help="Output format.")
    ] = "table",
    out_file: Annotated[Path | None, typer.Option("--out", help="Write to a file.")] = None,
) -> None:
    """Forecast every KPI per period: mean, P10, P50, P90 (DESIGN §2, §5)."""
    settings = load_settings()
    funnel = dated_funnel(settings, "forecasts")
    models = champion_forecast_models(settings)
    day = parse_date(as_of, "--as-of")
    result = forecast(
        funnel,
        models,
        freq=freq,
        periods=periods,
        as_of=pd.Timestamp(day) if day else None,
        segment=parse_segment(segment),
        draws=draws,
        seed=seed,
    )
    print_forecast(result, output_format, out_file)
