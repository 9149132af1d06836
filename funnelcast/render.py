"""Printing results for people (tables) and for programs (CSV, JSON)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

# Cells starting with these are run as formulas by spreadsheets; see OWASP "CSV injection".
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.2f}"
    return str(value)


def _display(column: str, value: Any) -> str:
    """A cell for people: rates as percentages, money and counts with thousands separators."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return _cell(value)
    if math.isnan(value):
        return ""
    if column.endswith("_rate") or column.startswith("stage_conversion."):
        return f"{value:.1%}"
    if column.endswith("_days"):
        return f"{value:.1f}"
    return f"{value:,.0f}"


def display_value(kpi: str, value: Any) -> str:
    """A figure of KPI `kpi` as people read it (percent, days, thousands separators)."""
    return _display(kpi, value)


def neutralise_formula(text: str) -> str:
    """Prefix a text cell a spreadsheet would run as a formula with a quote."""
    if text.startswith(_FORMULA_PREFIXES) and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def records_to_csv(records: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        row = []
        for column in columns:
            value = record.get(column)
            if isinstance(value, float) and not math.isnan(value):
                row.append(repr(value))
            else:
                row.append(neutralise_formula(_cell(value)))
        writer.writerow(row)
    return buffer.getvalue()


def records_to_json(records: Sequence[dict[str, Any]]) -> str:
    return json.dumps(list(records), indent=2, allow_nan=False) + "\n"


def print_table(
    records: Sequence[dict[str, Any]], columns: Sequence[str], title: str, console: Console
) -> None:
    table = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        table.add_column(
            column.replace("stage_conversion.", "→ ").replace("_", " "),
            justify="left" if column.startswith("period") else "right",
        )
    for record in records:
        table.add_row(*[_display(c, record.get(c)) for c in columns])
    console.print(table)
