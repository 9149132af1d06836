"""The synthetic funnel: determinism, pinned difficulty, truth against the tables, invariants."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from scoring.funnel import CUSTOMER_COLUMNS, LEAD_COLUMNS, STAGE_EVENT_COLUMNS
from scoring.synthetic import DEFAULT_END, STAGES, SyntheticFunnel, generate_funnel, write_funnel

N_LEADS = 50_000
CATEGORICAL = ["industry", "company_size", "region", "source", "seniority"]
NUMERIC = ["employees", "email_opens", "web_visits", "demo_requested"]
DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def funnel() -> SyntheticFunnel:
    return generate_funnel(N_LEADS, seed=0)


def _older_than(funnel: SyntheticFunnel, days: int) -> np.ndarray:
    return np.asarray(funnel.leads["created_at"] < funnel.end - days * DAY)


def _assert_share(observed: np.ndarray, probability: np.ndarray, what: str) -> None:
    """Observed share of Bernoulli outcomes within 3 standard errors of the true mean."""
    assert len(observed) > 1000, what
    se = np.sqrt(np.sum(probability * (1 - probability))) / len(probability)
    gap = observed.mean() - probability.mean()
    assert abs(gap) < 3 * se, (
        f"{what}: observed {observed.mean():.4f}, truth {probability.mean():.4f}"
    )


def _won_within(funnel: SyntheticFunnel, days: int) -> np.ndarray:
    leads = funnel.leads
    cycle = leads["closed_at"] - leads["created_at"]
    return np.asarray((leads["outcome"] == "won") & (cycle <= days * DAY))


# --- determinism ---------------------------------------------------------------------------


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_same_seed_writes_identical_bytes(
    tmp_path: Path, file_format: Literal["parquet", "csv"]
) -> None:
    first = write_funnel(generate_funnel(3000, seed=5), tmp_path / "a", file_format)
    second = write_funnel(generate_funnel(3000, seed=5), tmp_path / "b", file_format)
    other = write_funnel(generate_funnel(3000, seed=6), tmp_path / "c", file_format)
    assert [p.name for p in first] == [
        f"leads.{file_format}",
        f"stage_events.{file_format}",
        f"customers.{file_format}",
        "truth.parquet",
    ]
    for a, b, c in zip(first, second, other, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
        assert a.read_bytes() != c.read_bytes(), a.name


def test_written_parquet_reads_back_equal(tmp_path: Path) -> None:
    small = generate_funnel(2000, seed=3)
    write_funnel(small, tmp_path)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "leads.parquet"), small.leads)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "truth.parquet"), small.truth)
    events = pd.read_csv(write_funnel(small, tmp_path / "csv", "csv")[1])
    assert len(events) == len(small.stage_events)


def test_default_end_is_fixed_and_a_date_means_its_last_second() -> None:
    assert generate_funnel(50).end == DEFAULT_END == pd.Timestamp("2026-06-30 23:59:59")
    dated = generate_funnel(500, end=date(2025, 1, 31), years=1.0)
    assert dated.end == pd.Timestamp("2025-01-31 23:59:59")
    created = dated.leads["created_at"]
    assert created.max() <= dated.end
    assert created.min() >= pd.Timestamp("2024-01-31")


# --- pinned difficulty ---------------------------------------------------------------------


def test_difficulty_is_pinned(funnel: SyntheticFunnel) -> None:
    settled = _older_than(funnel, 365)
    leads = funnel.leads.loc[settled, CATEGORICAL + NUMERIC].astype({"demo_requested": float})
    won = np.asarray(funnel.leads.loc[settled, "outcome"] == "won")
    p_won = funnel.truth.loc[settled, "p_won"].to_numpy()
    train = np.random.default_rng(0).random(len(won)) < 0.5
    encode = ColumnTransformer(
        [
            ("categorical", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
            ("numeric", StandardScaler(), NUMERIC),
        ]
    )
    model = make_pipeline(encode, LogisticRegression(max_iter=2000))
    model.fit(leads[train], won[train])
    lr_auc = roc_auc_score(won[~train], model.predict_proba(leads[~train])[:, 1])
    true_auc = roc_auc_score(won[~train], p_won[~train])
    assert 0.78 <= true_auc <= 0.85
    assert lr_auc <= true_auc - 0.03, f"true {true_auc:.4f}, logistic regression {lr_auc:.4f}"


# --- truth against the tables --------------------------------------------------------------


def test_p_won_matches_settled_win_share(funnel: SyntheticFunnel) -> None:
    settled = _older_than(funnel, 365)
    won = np.asarray(funnel.leads["outcome"] == "won")[settled]
    _assert_share(won, funnel.truth["p_won"].to_numpy()[settled], "p_won")


@pytest.mark.parametrize(("days", "column"), [(30, "p_won_30d"), (90, "p_won_90d")])
def test_p_won_within_days_matches_observed(
    funnel: SyntheticFunnel, days: int, column: str
) -> None:
    mature = _older_than(funnel, 90)
    truth = funnel.truth[column].to_numpy()[mature]
    _assert_share(_won_within(funnel, days)[mature], truth, column)


def test_p_won_horizon_matches_observed(funnel: SyntheticFunnel) -> None:
    mature = _older_than(funnel, 180)
    truth = funnel.truth["p_won_horizon"].to_numpy()[mature]
    _assert_share(_won_within(funnel, 180)[mature], truth, "p_won_horizon")


def test_p_won_is_calibrated_in_deciles(funnel: SyntheticFunnel) -> None:
    settled = _older_than(funnel, 365)
    p = funnel.truth["p_won"].to_numpy()[settled]
    won = np.asarray(funnel.leads["outcome"] == "won")[settled].astype(float)
    decile = np.searchsorted(np.quantile(p, np.linspace(0.1, 0.9, 9)), p)
    observed = np.bincount(decile, weights=won)
    expected = np.bincount(decile, weights=p)
    variance = np.bincount(decile, weights=p * (1 - p))
    # The truth is given, not fitted: this is chi-square with 10 degrees of freedom; 29.6 is
    # its 0.999 quantile.
    statistic = float(np.sum((observed - expected) ** 2 / variance))
    assert statistic < 29.6, (observed / np.bincount(decile), expected / np.bincount(decile))
    assert np.all(np.diff(observed / np.bincount(decile)) > 0)


def test_truth_probabilities_are_ordered(funnel: SyntheticFunnel) -> None:
    truth = funnel.truth
    assert (truth["p_won_30d"] <= truth["p_won_90d"]).all()
    assert (truth["p_won_90d"] <= truth["p_won_horizon"]).all()
    assert (truth["p_won_horizon"] <= truth["p_won"]).all()
    ratio = truth["expected_value"] / truth["expected_amount"]
    np.testing.assert_allclose(ratio, truth["p_won"])


def test_won_amounts_follow_the_true_lognormal(funnel: SyntheticFunnel) -> None:
    won = np.asarray(funnel.leads["outcome"] == "won")
    residual = np.log(funnel.leads["amount"][won]) - funnel.truth["amount_log_mean"][won]
    sd = funnel.truth["amount_log_sd"][won]
    assert abs(residual.mean()) < 3 * sd.mean() / np.sqrt(won.sum())
    assert residual.std() == pytest.approx(sd.mean(), rel=0.05)


def test_churn_within_a_year_matches_truth(funnel: SyntheticFunnel) -> None:
    customers = funnel.customers
    truth = funnel.truth.set_index("account_id").loc[customers["account_id"]]
    old = np.asarray(customers["started_at"] < funnel.end - 365 * DAY)
    tenure = customers["churned_at"] - customers["started_at"]
    churned = np.asarray(tenure <= 365 * DAY)[old]
    _assert_share(churned, truth["p_churn_365d"].to_numpy()[old], "p_churn_365d")


# --- table invariants ----------------------------------------------------------------------


def test_tables_have_canonical_columns(funnel: SyntheticFunnel) -> None:
    assert list(funnel.leads.columns[: len(LEAD_COLUMNS)]) == list(LEAD_COLUMNS)
    assert list(funnel.stage_events.columns) == list(STAGE_EVENT_COLUMNS)
    assert list(funnel.customers.columns[: len(CUSTOMER_COLUMNS)]) == list(CUSTOMER_COLUMNS)
    for frame, column in [
        (funnel.leads, "created_at"),
        (funnel.leads, "closed_at"),
        (funnel.stage_events, "entered_at"),
        (funnel.customers, "churned_at"),
    ]:
        assert pd.api.types.is_datetime64_dtype(frame[column].dtype), column
    assert funnel.leads["region"].isin(["Nordics", "North America", "Europe"]).any()
    assert 20 <= funnel.leads["owner"].nunique() <= 60
    assert funnel.leads.groupby("owner")["region"].nunique().max() == 1


def test_lead_invariants(funnel: SyntheticFunnel) -> None:
    leads = funnel.leads
    assert leads["lead_id"].is_unique
    assert set(leads["outcome"]) == {"won", "lost", "open"}
    closed = leads["outcome"] != "open"
    assert leads.loc[closed, "closed_at"].notna().all()
    assert leads.loc[~closed, "closed_at"].isna().all()
    assert (leads.loc[closed, "closed_at"] > leads.loc[closed, "created_at"]).all()
    assert (leads.loc[closed, "closed_at"] <= funnel.end).all()
    assert (leads["created_at"] <= funnel.end).all()
    assert (leads.loc[closed, "stage"] == leads.loc[closed, "outcome"]).all()
    assert leads.loc[~closed, "stage"].isin(STAGES[:5]).all()
    assert leads.loc[leads["outcome"] == "won", "amount"].notna().all()
    assert 0.15 <= (leads["outcome"] == "won").mean() <= 0.25


def test_stage_events_are_ordered_and_inside_the_deal(funnel: SyntheticFunnel) -> None:
    leads = funnel.leads.set_index("lead_id")
    events = funnel.stage_events
    assert set(events["lead_id"]) == set(leads.index)
    deal = leads.loc[events["lead_id"]]
    stop = deal["closed_at"].fillna(funnel.end).to_numpy()
    entered = events["entered_at"].to_numpy()
    assert (entered >= deal["created_at"].to_numpy()).all()
    assert (entered <= stop).all()
    same_lead = events["lead_id"].to_numpy()[1:] == events["lead_id"].to_numpy()[:-1]
    assert (np.diff(entered)[same_lead] > np.timedelta64(0)).all()
    rank = events["stage"].map({stage: i for i, stage in enumerate(STAGES)}).to_numpy()
    assert (np.diff(rank)[same_lead] > 0).all()

    first = events.groupby("lead_id", sort=False).first()
    last = events.groupby("lead_id", sort=False).last()
    assert (first["stage"] == "lead").all()
    assert (first["entered_at"] == leads.loc[first.index, "created_at"]).all()
    assert (last["stage"] == leads.loc[last.index, "stage"]).all()
    closed = last["stage"].isin(["won", "lost"])
    assert (last.loc[closed, "entered_at"] == leads.loc[last.index[closed], "closed_at"]).all()
    # Every deal carries its amount from creation, so past pipeline values are point-in-time.
    assert leads["amount"].notna().all() and (leads["amount"] > 0).all()


def test_customers_are_the_won_accounts(funnel: SyntheticFunnel) -> None:
    won = funnel.leads[funnel.leads["outcome"] == "won"].set_index("account_id")
    customers = funnel.customers.set_index("account_id")
    assert customers.index.is_unique
    assert set(customers.index) == set(won.index)
    assert (customers["started_at"] == won.loc[customers.index, "closed_at"]).all()
    assert (customers["industry"] == won.loc[customers.index, "industry"]).all()
    churned = customers["churned_at"].notna()
    assert 0 < churned.mean() < 0.5
    assert (customers.loc[churned, "churned_at"] > customers.loc[churned, "started_at"]).all()
    assert (customers.loc[churned, "churned_at"] <= funnel.end).all()
    ratio = customers["value"] / won.loc[customers.index, "amount"]
    assert ratio.between(0.5, 2.0).all()


def test_won_cycles_are_realistic(funnel: SyntheticFunnel) -> None:
    won = funnel.leads[funnel.leads["outcome"] == "won"]
    days = (won["closed_at"] - won["created_at"]).dt.total_seconds() / 86_400
    assert 30 <= days.median() <= 70
    assert (days <= 180).mean() > 0.95
    closing = won["closed_at"]
    # Quarter-end push: the last two weeks of a quarter close more than a fair share.
    quarter_end = closing + pd.offsets.QuarterEnd(0)
    push = ((quarter_end.dt.normalize() - closing.dt.normalize()) < 14 * DAY).mean()
    assert push > 1.3 * 14 / 91
    assert (closing.dt.day_of_week >= 5).mean() < 0.05
