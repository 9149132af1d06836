"""The deal-cycle model as a pipeline `TrainingResult`: metrics next to the Aalen-Johansen
baseline, and the predicted-versus-observed cumulative-incidence plots."""

from __future__ import annotations

from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from scoring.funnel import Funnel
from training.deal_cycle import CycleParams, train_deal_cycle
from training.result import Evaluation, TrainingResult

NAME = "deal-cycle"


def incidence_figure(incidence: pd.DataFrame, title: str) -> Any:
    """Mean predicted cumulative incidence of won and lost next to Aalen-Johansen's."""
    # A bare Figure (no pyplot): no GUI backend, no global figure registry to leak.
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    for outcome, colour in (("won", "tab:green"), ("lost", "tab:red")):
        axes.plot(
            incidence["days"],
            incidence[f"observed_{outcome}"],
            color=colour,
            label=f"observed {outcome} (Aalen-Johansen)",
        )
        axes.plot(
            incidence["days"],
            incidence[f"predicted_{outcome}"],
            color=colour,
            linestyle="--",
            label=f"predicted {outcome}",
        )
    axes.set_xlabel("days since creation")
    axes.set_ylabel("cumulative incidence")
    axes.set_title(title)
    axes.legend(fontsize=8)
    figure.tight_layout()
    return figure


def train_deal_cycle_result(
    funnel: Funnel, *, seed: int = 0, test_fraction: float = 0.2, threads: int | None = None
) -> TrainingResult:
    """Train the deal-cycle model and package it for logging and the gate (`threads`: LightGBM
    threads, default `CycleParams.threads`)."""
    params = CycleParams() if threads is None else CycleParams(threads=threads)
    result = train_deal_cycle(funnel, seed=seed, test_fraction=test_fraction, params=params)
    figures = {
        "cumulative_incidence.png": incidence_figure(
            result.evaluation.incidence, "deal-cycle: evaluation slice"
        ),
        "cumulative_incidence_baseline.png": incidence_figure(
            result.baseline_evaluation.incidence, "Aalen-Johansen baseline: evaluation slice"
        ),
    }
    return TrainingResult(
        name=NAME,
        model=result.model,
        evaluation=Evaluation(
            metrics=result.metrics,
            baselines=result.baselines,
            split=result.split.describe(),
            rows={"train": len(result.split.train), "test": len(result.split.test)},
        ),
        params=result.params,
        figures=figures,
        limits=[
            "Time to close from creation with won and lost as competing outcomes; open deals "
            "are censored at the extraction date.",
            "Weekly buckets: inside a week, closes spread over the days by a weekday and "
            "calendar profile learned from all deals, not by each deal's own hazard.",
            "With less than two years of closes, the calendar features that turn once a year "
            "(month, week of year, holidays, summer) are left out.",
        ],
        tags={"validation_date": str(result.split.validation_date)},
    )
