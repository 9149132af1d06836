"""Rebuilding the funnel as of a cutoff: nothing from after the cutoff leaks in."""

from __future__ import annotations

import pandas as pd
import pytest

from scoring.errors import FunnelcastInputError
from scoring.funnel import Funnel
from scoring.snapshot import funnel_as_of


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


def funnel() -> Funnel:
    leads = pd.DataFrame(
        {
            "lead_id": ["A", "B", "C", "D"],
            "created_at": pd.to_datetime(["2026-01-01", "2026-01-10", "2026-02-01", "2026-03-05"]),
            "outcome": ["won", "lost", "won", "open"],
            "closed_at": pd.to_datetime(
                pd.Series(["2026-01-20", "2026-03-01", "2026-02-20", None])
            ),
            "amount": [100.0, 200.0, 300.0, 400.0],
            "stage": ["won", "lost", "won", "meeting"],
            "region": ["N", "S", "N", "S"],
        }
    )
    events = pd.DataFrame(
        {
            "lead_id": ["A", "A", "B", "B", "B", "C", "C"],
            "stage": ["lead", "won", "lead", "meeting", "lost", "lead", "won"],
            "entered_at": pd.to_datetime(
                [
                    "2026-01-01",
                    "2026-01-20",
                    "2026-01-10",
                    "2026-02-05",
                    "2026-03-01",
                    "2026-02-01",
                    "2026-02-20",
                ]
            ),
        }
    )
    customers = pd.DataFrame(
        {
            "account_id": ["a", "c"],
            "started_at": pd.to_datetime(["2026-01-20", "2026-02-20"]),
            "churned_at": pd.to_datetime(pd.Series(["2026-03-10", None])),
        }
    )
    return Funnel(
        leads=leads, stage_events=events, customers=customers, observed_until=ts("2026-03-31")
    )


def test_as_of_hides_everything_after_the_cutoff() -> None:
    past = funnel_as_of(funnel(), ts("2026-02-10"))
    leads = past.leads.set_index("lead_id")
    assert list(leads.index) == ["A", "B", "C"]  # D not created yet
    assert leads.loc["A", "outcome"] == "won"  # closed before the cutoff
    assert leads.loc["B", "outcome"] == "open" and leads["closed_at"].isna()["B"]
    assert leads.loc["B", "stage"] == "meeting"  # its last event by the cutoff
    assert leads.loc["C", "stage"] == "lead"
    assert past.stage_events is not None
    assert (past.stage_events["entered_at"] <= ts("2026-02-10")).all()
    assert past.customers is not None
    assert past.customers["account_id"].tolist() == ["a"]
    assert past.customers["churned_at"].isna().all()  # churned after the cutoff
    assert past.observed_until == ts("2026-02-10")
    assert leads.loc["B", "amount"] == 200.0  # attributes known from creation


def test_cutoff_errors() -> None:
    with pytest.raises(FunnelcastInputError, match="after the end"):
        funnel_as_of(funnel(), ts("2027-01-01"))
    with pytest.raises(FunnelcastInputError, match="no leads"):
        funnel_as_of(funnel(), ts("2025-01-01"))
    undated = funnel().with_tables(dated=False)
    with pytest.raises(FunnelcastInputError, match="needs dated data"):
        funnel_as_of(undated, ts("2026-02-01"))
