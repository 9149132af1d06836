"""Synthetic funnels built in code, and lead-conversion runs trained once per session."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pandas as pd
import pytest

from scoring.forecast import ForecastModels, forecast_models
from scoring.funnel import Funnel
from scoring.snapshot import funnel_as_of
from scoring.synthetic import generate_funnel
from training.lead_conversion import ConversionResult, train_lead_conversion
from training.pipeline import fit_models

SMALL_LEADS = 6_000
LARGE_LEADS = 50_000


@dataclass(frozen=True)
class SyntheticRun:
    """A synthetic funnel, its ground truth, and a lead-conversion run on it."""

    funnel: Funnel
    truth: pd.DataFrame
    result: ConversionResult


def synthetic_funnel(n_leads: int, seed: int) -> tuple[Funnel, pd.DataFrame]:
    """A canonical funnel from the generator (typed by the data contract) and its truth."""
    drawn = generate_funnel(n_leads, seed=seed)
    funnel = drawn.as_funnel()
    return funnel, drawn.truth.set_index("lead_id")


@pytest.fixture(scope="session")
def small_run() -> SyntheticRun:
    """A small synthetic funnel, trained once: for behaviour, not for quality figures."""
    funnel, truth = synthetic_funnel(SMALL_LEADS, seed=11)
    return SyntheticRun(funnel, truth, train_lead_conversion(funnel, seed=0))


@pytest.fixture(scope="session")
def large_run() -> SyntheticRun:
    """The quality-bar funnel of issue 3: 50,000 synthetic leads, seed 0."""
    funnel, truth = synthetic_funnel(LARGE_LEADS, seed=0)
    return SyntheticRun(funnel, truth, train_lead_conversion(funnel, seed=0))


FORECAST_NAMES = ("lead-conversion", "deal-cycle", "deal-value", "lead-volume", "churn")
AS_OF = pd.Timestamp("2026-03-31 23:59:59.999999")


@dataclass(frozen=True)
class Trained:
    funnel: Funnel
    models: ForecastModels


@pytest.fixture(scope="session")
def trained_forecast() -> Trained:
    """Every forecast model, fitted once on a small synthetic funnel known up to AS_OF."""
    funnel = generate_funnel(6_000, seed=5, end=date(2026, 6, 30)).as_funnel()
    known = funnel_as_of(funnel, AS_OF)
    models, skipped = fit_models(known, FORECAST_NAMES, seed=0, threads=1)
    assert not skipped, skipped
    return Trained(funnel, forecast_models(models, {name: "test" for name in models}))
