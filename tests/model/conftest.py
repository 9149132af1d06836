"""Synthetic funnels built in code, and lead-conversion runs trained once per session."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest

from scoring.funnel import Funnel
from scoring.synthetic import generate_funnel
from training.lead_conversion import ConversionResult, train_lead_conversion

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
