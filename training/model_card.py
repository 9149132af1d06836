"""Model cards: a short markdown page that goes with each registered version."""

from __future__ import annotations

import math

from scoring.funnel import Funnel
from training.result import TrainingResult


def _number(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"


def metrics_table(result: TrainingResult) -> str:
    """Metrics of the model next to each baseline, one row per metric."""
    evaluation = result.evaluation
    baselines = list(evaluation.baselines)
    header = "| metric | model | " + " | ".join(baselines) + " |"
    rule = "|---|---|" + "---|" * len(baselines)
    rows = [
        f"| {metric} | {_number(value)} | "
        + " | ".join(_number(evaluation.baselines[b].get(metric, math.nan)) for b in baselines)
        + " |"
        for metric, value in evaluation.metrics.items()
    ]
    return "\n".join([header, rule, *rows])


def render(result: TrainingResult, funnel: Funnel) -> str:
    """The model card of a training result."""
    leads = funnel.leads
    if funnel.dated:
        span = f"{leads['created_at'].min():%Y-%m-%d} to {funnel.observed_until}"
    else:
        span = "undated"
    rows = ", ".join(f"{k} {v:,}" for k, v in result.evaluation.rows.items())
    limits = "\n".join(f"- {line}" for line in result.limits) or "- none recorded"
    params = ", ".join(f"{k}={v}" for k, v in sorted(result.params.items())) or "defaults"
    return f"""# {result.name}

## Data
- data set: {funnel.name} ({len(leads):,} leads; {span})
- rows: {rows}
- split: {result.evaluation.split}

## Metrics on the evaluation slice (data the model did not see)
{metrics_table(result)}

## Parameters
{params}

## Limits
{limits}
"""
