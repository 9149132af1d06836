"""`funnelcast goals`: add, list, remove, import and check SMART goals (DESIGN §2, §5).

`goals_app` is the sub-app `funnelcast.cli` registers; `report` lives in
`funnelcast.goals_report_command` and joins it there.
A goal's segment keys are checked against the lead columns of the funnel in the store. A check
runs the forecast engine with the champions and is recorded in the goal's history (what the API's
attainment routes show).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import sqlalchemy as sa
import typer
from rich.table import Table
from rich.text import Text

from funnelcast.cli_support import (
    champion_forecast_models,
    dated_funnel,
    err,
    friendly_errors,
    load_settings,
    open_store,
    out,
    parse_date,
    parse_segment,
)
from funnelcast.render import display_value
from scoring.attainment import Attainment, check_goal
from scoring.errors import FunnelcastInputError
from scoring.forecast import ForecastModels
from scoring.forecast_kpis import FORECAST_KPIS
from scoring.funnel import Funnel
from scoring.goal_store import (
    StoredCheck,
    StoredGoal,
    add_goal,
    funnel_segment_keys,
    get_goal,
    import_goals,
    list_goals,
    record_check,
    remove_goal,
)
from scoring.goals import DIRECTIONS, load_goals_yaml, parse_goal
from scoring.kpis import KPI_IDS, STAGE_CONVERSION_PREFIX
from scoring.settings import Settings

goals_app = typer.Typer(
    help="SMART goals on the funnel KPIs: add, list, remove, import, check.",
    no_args_is_help=True,
)

_KPI_HELP = f"KPI id: {', '.join(KPI_IDS)} or {STAGE_CONVERSION_PREFIX}<stage>."


def _number(value: float) -> str:
    return f"{value:,.10g}"


def _goals_table(goals: list[StoredGoal]) -> Table:
    table = Table(title="Goals", header_style="bold")
    for column in ("id", "name", "kpi", "target", "period", "segment", "owner"):
        table.add_column(column, justify="right" if column in ("id", "target") else "left")
    for stored in goals:
        goal = stored.goal
        sign = "≥" if goal.direction == "at_least" else "≤"
        cells = (
            str(stored.id),
            goal.name,
            goal.kpi,
            f"{sign} {_number(goal.target)}",
            f"{goal.period_start} to {goal.period_end}",
            ", ".join(f"{k}={v}" for k, v in goal.segment.items()),
            goal.owner or "",
        )
        table.add_row(*(Text(cell) for cell in cells))  # names are text, not rich markup
    return table


@goals_app.command("add")
@friendly_errors
def add(
    name: Annotated[str, typer.Option(help="What the goal is called, e.g. 'Q1 new revenue'.")],
    kpi: Annotated[str, typer.Option(help=_KPI_HELP)],
    target: Annotated[float, typer.Option(help="The target value (rates as 0-1).")],
    start: Annotated[str, typer.Option(help="First day of the period, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option(help="Last day of the period (inclusive), YYYY-MM-DD.")],
    direction: Annotated[
        str, typer.Option(help=f"{' or '.join(DIRECTIONS)} the target.")
    ] = "at_least",
    segment: Annotated[
        list[str] | None,
        typer.Option(help="Lead column=value; repeat for several (ANDed)."),
    ] = None,
    owner: Annotated[str | None, typer.Option(help="Who owns the goal.")] = None,
) -> None:
    """Add a goal and print its id."""
    fields = {
        "name": name,
        "kpi": kpi,
        "direction": direction,
        "target": target,
        "period_start": start,
        "period_end": end,
        "segment": parse_segment(segment),
        "owner": owner,
    }
    store = open_store(load_settings())
    try:
        goal = parse_goal(fields, funnel_segment_keys(store.engine))
        stored = add_goal(store.engine, goal)
    finally:
        store.close()
    out.print(f"added goal {stored.id}: {goal.name}", highlight=False, markup=False)
    err.print(goal.summary(), highlight=False, markup=False, style="dim")


@goals_app.command("list")
@friendly_errors
def list_command(
    owner: Annotated[str | None, typer.Option(help="Only this owner's goals.")] = None,
    output_format: Annotated[
        Literal["table", "json"], typer.Option("--format", help="Output format.")
    ] = "table",
) -> None:
    """List goals by id (JSON: one record per goal, with its times)."""
    store = open_store(load_settings())
    try:
        goals = list_goals(store.engine, owner=owner)
    finally:
        store.close()
    if output_format == "json":
        typer.echo(json.dumps([g.as_record() for g in goals], indent=2, ensure_ascii=False))
        return
    if not goals:
        whose = f" for owner {owner!r}" if owner is not None else ""
        err.print(f"no goals{whose} yet; add one with `funnelcast goals add`", markup=False)
        return
    out.print(_goals_table(goals))


@goals_app.command("remove")
@friendly_errors
def remove(
    goal_id: Annotated[int, typer.Argument(metavar="ID", help="The goal's id (`goals list`).")],
) -> None:
    """Remove a goal and its check history."""
    store = open_store(load_settings())
    try:
        removed = remove_goal(store.engine, goal_id)
    finally:
        store.close()
    out.print(f"removed goal {removed.id}: {removed.goal.name}", highlight=False, markup=False)


@goals_app.command("import")
@friendly_errors
def import_command(
    file: Annotated[Path, typer.Argument(metavar="FILE.yaml", help="A goals file (docs/api.md).")],
) -> None:
    """Add every goal of a YAML goals file: all of them, or none if any is invalid."""
    store = open_store(load_settings())
    try:
        goals = load_goals_yaml(file, funnel_segment_keys(store.engine))
        stored = import_goals(store.engine, goals)
    finally:
        store.close()
    if not stored:
        err.print(f"{file} holds no goals; nothing was imported", markup=False)
        return
    ids = ", ".join(str(s.id) for s in stored)
    plural = "s" if len(stored) > 1 else ""
    out.print(f"imported {len(stored)} goal{plural} (id{plural} {ids})", highlight=False)


# -- check ------------------------------------------------------------------------------------

TRAIN_FIRST = (
    "its period is not over, and checking it needs the champions of lead-conversion and "
    "deal-cycle: train and promote first (`funnelcast train --promote`, or `funnelcast demo`)"
)


def selected_goals(
    engine: sa.Engine, goal_ids: list[int] | None, owner: str | None
) -> list[StoredGoal]:
    """The goals asked for by id (each must exist; `owner` narrows them), else every goal (of
    `owner`)."""
    if goal_ids:
        goals = [get_goal(engine, goal_id) for goal_id in dict.fromkeys(goal_ids)]
        return [stored for stored in goals if owner is None or stored.goal.owner == owner]
    return list_goals(engine, owner)


def _champion_models(settings: Settings) -> ForecastModels | None:
    """The engine's champions; None without the two it needs."""
    try:
        return champion_forecast_models(settings)
    except FunnelcastInputError:
        return None


def _last_known_day(funnel: Funnel, as_of: date | None) -> date:
    """The last day a check as of `as_of` (default: the end of the data) knows all of."""
    if as_of is not None:
        return as_of
    return pd.Timestamp(funnel.observed_until or funnel.leads["created_at"].max()).date()


def check_goals(
    goals: list[StoredGoal],
    settings: Settings,
    as_of: date | None,
    draws: int,
    seed: int,
) -> list[tuple[StoredGoal, Attainment]]:
    """Check every goal (none is recorded yet); goals whose KPI is not forecast are skipped with
    a warning. Models are loaded only when a period is not over."""
    funnel = dated_funnel(settings, "goal checks")
    last_day = _last_known_day(funnel, as_of)
    checkable = []
    for stored in goals:
        if stored.goal.kpi in FORECAST_KPIS:
            checkable.append(stored)
        else:
            err.print(
                f"goal {stored.id} ({stored.goal.name}): {stored.goal.kpi} is not forecast; "
                "skipped",
                markup=False,
                highlight=False,
            )
    models = None
    pending = [stored for stored in checkable if stored.goal.period_end > last_day]
    if pending:
        models = _champion_models(settings)
        if models is None:
            first = pending[0]
            raise FunnelcastInputError(f"goal {first.id} ({first.goal.name}): {TRAIN_FIRST}")
    moment = pd.Timestamp(as_of) if as_of is not None else None
    checked = []
    for stored in checkable:
        try:
            attainment = check_goal(
                stored.goal,
                funnel,
                models,
                as_of=moment,
                draws=draws,
                seed=seed,
                on_track=settings.goal_on_track,
                at_risk=settings.goal_at_risk,
            )
        except FunnelcastInputError as error:  # a segment key the data no longer has
            raise FunnelcastInputError(f"goal {stored.id} ({stored.goal.name}): {error}") from None
        checked.append((stored, attainment))
    return checked


_STATUS_STYLES = {
    "on_track": "green",
    "met": "green",
    "at_risk": "yellow",
    "off_track": "red",
    "missed": "red",
}


def _figure(kpi: str, value: float | None) -> str:
    return "n/a" if value is None else display_value(kpi, value)


def _check_card(stored: StoredGoal, attainment: Attainment) -> Text:
    """One goal's check, a few lines that read at any terminal width."""
    goal = stored.goal
    sign = "≥" if goal.direction == "at_least" else "≤"
    owner = f" (owner {goal.owner})" if goal.owner else ""
    segment = ", ".join(f"{k}={v}" for k, v in goal.segment.items())
    lines = [
        Text.assemble((f"{stored.id}  {goal.name}", "bold"), owner),
        Text(
            f"    {goal.kpi} {sign} {display_value(goal.kpi, goal.target)}, "
            f"{goal.period_start} to {goal.period_end}" + (f", {segment}" if segment else "")
        ),
    ]
    if attainment.state == "future":
        figures = "    not started yet"
    else:
        so_far = "final" if attainment.state == "past" else "actual so far"
        figures = f"    {so_far} {_figure(goal.kpi, attainment.actual)}"
    if attainment.forecast is not None:
        p10, p50, p90 = (_figure(goal.kpi, attainment.forecast[q]) for q in ("p10", "p50", "p90"))
        figures += f"; forecast P10 {p10}, P50 {p50}, P90 {p90}"
    lines.append(Text(figures))
    status = attainment.status
    lines.append(
        Text.assemble(
            f"    chance {attainment.probability:.0%}: ",
            (status.replace("_", " "), _STATUS_STYLES.get(status, "")),
        )
    )
    lines.append(Text(f"    what it would take: {attainment.takes.message}"))
    return Text("\n").join(lines)


@goals_app.command("check")
@friendly_errors
def check(
    goal_ids: Annotated[
        list[int] | None,
        typer.Option("--id", help="A goal's id (`goals list`); repeat for several. Default: all."),
    ] = None,
    owner: Annotated[str | None, typer.Option(help="Only this owner's goals.")] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Check as of the end of this day (default: data end)."),
    ] = None,
    draws: Annotated[int, typer.Option(min=100, max=100_000, help="Monte Carlo draws.")] = 2000,
    seed: Annotated[int, typer.Option(min=0, help="Random seed (same seed, same figures).")] = 0,
    output_format: Annotated[
        Literal["table", "json"], typer.Option("--format", help="Output format.")
    ] = "table",
) -> None:
    """Check goals now and record each check in the goal's history.

    Per goal: actual so far, forecast P10/P50/P90, chance, status and what it would take.
    """
    settings = load_settings()
    day = parse_date(as_of, "--as-of")
    store = open_store(settings)
    try:
        goals = selected_goals(store.engine, goal_ids, owner)
        if not goals:
            whose = f" for owner {owner!r}" if owner is not None else ""
            err.print(
                f"no goals{whose} to check; add one with `funnelcast goals add`", markup=False
            )
            return
        checked = check_goals(goals, settings, day, draws, seed)
        recorded = [record_check(store.engine, s.id, a.as_check()) for s, a in checked]
    finally:
        store.close()
    if output_format == "json":
        typer.echo(json.dumps(_check_records(checked, recorded), indent=2, ensure_ascii=False))
        return
    if checked:
        out.print(f"Goals as of {checked[0][1].as_of:%Y-%m-%d}", style="bold", highlight=False)
        for stored, attainment in checked:
            out.print()
            out.print(_check_card(stored, attainment), highlight=False)
        plural = "s" if len(checked) > 1 else ""
        err.print(f"recorded {len(checked)} check{plural} in the goals' history", style="dim")
    for note in sorted({note for _, a in checked for note in a.notes}):
        err.print(f"note: {note}", markup=False, highlight=False)


def _check_records(
    checked: list[tuple[StoredGoal, Attainment]], recorded: list[StoredCheck]
) -> list[dict[str, object]]:
    """One record per goal: its id and name, the recorded check's id, then the attainment."""
    return [
        {
            "goal_id": stored.id,
            "name": stored.goal.name,
            "check_id": check.id,
            **attainment.as_record(),
        }
        for (stored, attainment), check in zip(checked, recorded, strict=True)
    ]
