"""What every `funnelcast` command shares: consoles, error handling, settings, the store."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from scoring.errors import FunnelcastInputError
from scoring.funnel import Funnel
from scoring.kpis import KpiError
from scoring.mapping import apply_mapping
from scoring.mapping_spec import load_mapping
from scoring.settings import Settings
from scoring.store import FunnelStore

out = Console(soft_wrap=True)
if TYPE_CHECKING:
    from scoring.forecast import ForecastModels

err = Console(stderr=True, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")

EXIT_BAD_INPUT = 2
EXIT_OTHER = 1


def friendly_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn errors a user can fix into a message and exit code 2; others into exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (FunnelcastInputError, KpiError) as error:
            err.print(f"[red]error:[/red] {error}", highlight=False, markup=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except ValidationError as error:  # settings from the environment
            err.print(f"[red]configuration error:[/red] {error}", highlight=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as error:
            if os.environ.get("FUNNELCAST_DEBUG"):
                raise
            err.print(f"[red]failed:[/red] {type(error).__name__}: {error}", highlight=False)
            err.print("set FUNNELCAST_DEBUG=1 for the full traceback", style="dim")
            raise typer.Exit(EXIT_OTHER) from None

    return wrapper


def load_settings() -> Settings:
    return Settings()


def open_store(settings: Settings) -> FunnelStore:
    return FunnelStore.open(settings.store_url)


def parse_date(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise FunnelcastInputError(f"{option} {value!r} is not a date in YYYY-MM-DD") from None


def parse_segment(pairs: list[str] | None) -> dict[str, str]:
    segment: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise FunnelcastInputError(f"--segment {pair!r} must look like key=value")
        segment[key.strip()] = value.strip()
    return segment


def load_funnel(settings: Settings, mapping: str | None, data_dir: Path | None) -> Funnel:
    """The funnel from `--mapping` + `--data-dir`, or else from the store."""
    if mapping is not None or data_dir is not None:
        if mapping is None or data_dir is None:
            raise FunnelcastInputError("--mapping and --data-dir go together")
        return apply_mapping(load_mapping(mapping), data_dir).funnel
    store = open_store(settings)
    try:
        return store.load()
    finally:
        store.close()


def dated_funnel(settings: Settings, what: str) -> Funnel:
    """The stored funnel; `what` ("forecasts", "goal checks") needs dates, so undated data is
    an input error."""
    store = open_store(settings)
    try:
        funnel = store.load()
    finally:
        store.close()
    if not funnel.dated:
        raise FunnelcastInputError(f"{what} need dated data; this data set has no dates")
    return funnel


def champion_forecast_models(settings: Settings) -> ForecastModels:
    """The champions the forecast engine draws from (registry, else local copies), their trees
    compiled (`scoring.compiled_trees`, cached in the home).

    Raises:
        FunnelcastInputError: lead-conversion or deal-cycle has no champion.
    """
    from scoring.champions import compile_scorer, load_champions
    from scoring.forecast import forecast_models
    from scoring.lead_scores import LeadScorer

    champions = load_champions(settings.tracking_uri, settings.models_dir)
    for problem in champions.degraded:
        err.print(problem, markup=False, highlight=False)
    loaded = {name: model.model for name, model in champions.models.items()}
    models = forecast_models(loaded, champions.versions())
    compile_scorer(
        LeadScorer(models.conversion, models.cycle, models.value), settings.compiled_cache
    )
    return models
