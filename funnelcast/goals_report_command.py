"""`funnelcast goals report`: the goals report as one file a manager can get by e-mail.

`funnelcast.cli` adds it to the `goals` sub-app (it builds on `goals check`'s helpers).
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer

from funnelcast.cli_support import err, load_settings, open_store, parse_date
from funnelcast.goals_command import check_goals, selected_goals
from scoring.goal_store import check_history, record_check
from scoring.goals_report import ReportItem, report_html, report_markdown


def report(
    out_file: Annotated[Path, typer.Option("--out", help="The file to write.")],
    output_format: Annotated[
        Literal["html", "md"], typer.Option("--format", help="html (charts inline) or md.")
    ] = "html",
    owner: Annotated[str | None, typer.Option(help="Only this owner's goals.")] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Check as of the end of this day (default: data end)."),
    ] = None,
    draws: Annotated[int, typer.Option(min=100, max=100_000, help="Monte Carlo draws.")] = 2000,
    seed: Annotated[int, typer.Option(min=0, help="Random seed (same seed, same figures).")] = 0,
    title: Annotated[str, typer.Option(help="The report's title.")] = "Goals report",
) -> None:
    """Check every goal now (recorded in its history) and write the report: per goal the
    target, actual so far, forecast against the target, probability, status, history and what
    it would take; a roll-up per owner."""
    settings = load_settings()
    day = parse_date(as_of, "--as-of")
    store = open_store(settings)
    try:
        goals = selected_goals(store.engine, None, owner)
        checked = check_goals(goals, settings, day, draws, seed)
        items = []
        for stored, attainment in checked:
            record_check(store.engine, stored.id, attainment.as_check())
            items.append(ReportItem(stored, attainment, check_history(store.engine, stored.id)))
    finally:
        store.close()
    now = datetime.now(UTC)
    render = report_html if output_format == "html" else report_markdown
    text = render(items, title, now)
    # Written next to the target and renamed: a reader never sees half a report.
    handle, temporary = tempfile.mkstemp(dir=out_file.parent, suffix=".part")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(text)
    Path(temporary).replace(out_file)
    err.print(f"wrote {out_file} ({len(items)} goals)", markup=False, highlight=False)
