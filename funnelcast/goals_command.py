"""`funnelcast goals`: add, list, remove and import SMART goals (DESIGN §2).

`goals_app` is the sub-app `funnelcast.cli` registers; `check` and `report` join it elsewhere.
A goal's segment keys are checked against the lead columns of the funnel in the store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table
from rich.text import Text

from funnelcast.cli_support import (
    err,
    friendly_errors,
    load_settings,
    open_store,
    out,
    parse_segment,
)
from scoring.goal_store import (
    StoredGoal,
    add_goal,
    funnel_segment_keys,
    import_goals,
    list_goals,
    remove_goal,
)
from scoring.goals import DIRECTIONS, load_goals_yaml, parse_goal
from scoring.kpis import KPI_IDS, STAGE_CONVERSION_PREFIX

goals_app = typer.Typer(
    help="SMART goals on the funnel KPIs: add, list, remove, import.",
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
