"""Ranking target segments by expected value per lead."""

from __future__ import annotations

import pandas as pd
import pytest

from scoring.errors import FunnelcastInputError
from scoring.funnel import Funnel
from scoring.target_segments import rank_segments

END = pd.Timestamp("2026-06-30")


def _funnel() -> Funnel:
    """Two industries: software wins 50 % at 10,000; retail 10 % at 2,000; 100 leads each,
    created a year before the end (decided); plus 50 young leads that must not count."""
    rows = []
    for industry, rate, amount in (("software", 0.5, 10_000.0), ("retail", 0.1, 2_000.0)):
        for i in range(100):
            won = i < rate * 100
            created = END - pd.Timedelta(days=365) + pd.Timedelta(hours=i)
            rows.append(
                {
                    "lead_id": f"{industry}-{i}",
                    "created_at": created,
                    "outcome": "won" if won else "lost",
                    "closed_at": created + pd.Timedelta(days=30),
                    "amount": amount if won else None,
                    "industry": industry,
                }
            )
    for i in range(50):  # created 10 days before the end: undecided
        rows.append(
            {
                "lead_id": f"young-{i}",
                "created_at": END - pd.Timedelta(days=10),
                "outcome": "won",
                "closed_at": END - pd.Timedelta(days=1),
                "amount": 1e9,
                "industry": "retail",
            }
        )
    leads = pd.DataFrame(rows)
    return Funnel(leads=leads, observed_until=END, horizon_days=180, features=("industry",))


def test_segments_are_ranked_by_expected_value_with_intervals() -> None:
    ranked = rank_segments(_funnel(), ["industry"])

    assert [s["industry"] for s in ranked["segment"]] == ["software", "retail"]
    software, retail = ranked.iloc[0], ranked.iloc[1]
    assert software["leads"] == 100 and software["won"] == 50  # the young leads are left out
    assert software["expected_value_per_lead"] == pytest.approx(5_000.0)
    assert retail["expected_value_per_lead"] == pytest.approx(200.0)
    for row in (software, retail):
        assert row["expected_value_p10"] <= row["expected_value_per_lead"]
        assert row["expected_value_per_lead"] <= row["expected_value_p90"]
        assert row["conversion_p10"] < row["conversion_rate"] < row["conversion_p90"]


def test_small_segments_are_left_out() -> None:
    assert rank_segments(_funnel(), ["industry"], min_leads=101).empty


def test_an_unknown_column_is_an_input_error() -> None:
    with pytest.raises(FunnelcastInputError, match=r"unknown segment column.*region"):
        rank_segments(_funnel(), ["region"])
