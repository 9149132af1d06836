"""Printing training runs and evaluations: each model's metrics next to its baselines."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from training.pipeline import ModelOutcome


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def metrics_table(
    title: str, metrics: Mapping[str, float], baselines: Mapping[str, Mapping[str, float]]
) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold")
    table.add_column("metric")
    table.add_column("model", justify="right")
    for name in baselines:
        table.add_column(name, justify="right")
    for metric, value in metrics.items():
        table.add_row(
            metric, _number(value), *[_number(baselines[b].get(metric)) for b in baselines]
        )
    return table


def print_training_report(outcomes: Sequence[ModelOutcome], console: Console) -> None:
    for outcome in outcomes:
        if outcome.status == "skipped":
            console.print(
                f"[yellow]{outcome.name}: skipped[/yellow] — {outcome.message}", highlight=False
            )
            continue
        result = outcome.result
        assert result is not None
        kind = result.params.get("model_kind")
        chosen = f" ({kind})" if kind else ""
        title = f"{outcome.name}/{outcome.version}{chosen} — {result.evaluation.split}"
        console.print(metrics_table(title, result.evaluation.metrics, result.evaluation.baselines))
        if outcome.decision is not None:
            style = "green" if outcome.decision.passed else "yellow"
            verdict = "champion" if outcome.decision.passed else "champion kept"
            console.print(
                f"[{style}]{verdict}:[/{style}] {outcome.decision.explain()}", highlight=False
            )


def print_evaluation(report: Mapping[str, Any], console: Console) -> None:
    title = f"{report['model']}/{report['version']} — {report['split']}"
    console.print(metrics_table(title, report["metrics"], report["baselines"]))
