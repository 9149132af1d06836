"""The served scores: lead-conversion, deal-cycle and deal-value joined (scoring.lead_scores).

All three models are trained on the deal-cycle session funnel (50k synthetic leads) and judged
on leads none of them saw: the deal-cycle test slice (created after its validation date) that
is also in lead-conversion's evaluation slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from scoring.cycle import created_ns
from scoring.lead_scores import GRADE_TOP_SHARES, SCORE_COLUMNS, LeadScorer
from tests.model.cycle_fixtures import CycleRun, cycle_run_fixture
from training.deal_value import train_deal_value
from training.lead_conversion import train_lead_conversion

cycle_run = cycle_run_fixture


@dataclass(frozen=True)
class ScorerRun:
    scorer: LeadScorer
    leads: pd.DataFrame  # unseen by every model
    truth: pd.DataFrame


@pytest.fixture(scope="session")
def scorer_run(cycle_run: CycleRun) -> ScorerRun:
    conversion = train_lead_conversion(cycle_run.funnel, seed=0)
    value = train_deal_value(cycle_run.funnel, seed=0).model
    scorer = LeadScorer(
        conversion.champion,
        cycle_run.result.model,
        value,  # type: ignore[arg-type]
        {"lead-conversion": "1", "deal-cycle": "1", "deal-value": "1"},
    )
    unseen = cycle_run.deals["lead_id"].isin(set(conversion.evaluation_lead_ids)).to_numpy()
    assert unseen.sum() > 5_000, "the two evaluation slices should mostly overlap"
    return ScorerRun(
        scorer,
        cycle_run.deals[unseen].reset_index(drop=True),
        cycle_run.truth[unseen].reset_index(drop=True),
    )


def test_scores_agree_with_each_other(scorer_run: ScorerRun) -> None:
    frame = scorer_run.scorer.score_frame(scorer_run.leads)
    assert list(frame.columns) == list(SCORE_COLUMNS)
    assert (frame["p_won_30d"] <= frame["p_won_90d"] + 1e-12).all()
    assert (frame["p_won_90d"] <= frame["probability"] + 1e-12).all()
    assert frame["score"].between(0, 100).all()
    assert frame["percentile"].between(0, 100).all()
    assert (frame["expected_value_p10"] <= frame["expected_value"]).mean() > 0.99
    assert (frame["expected_value_p10"] <= frame["expected_value_p90"]).all()
    assert frame["expected_days_to_close"].between(0, scorer_run.scorer.horizon_days).all()


@pytest.mark.parametrize("days", [30, 90])
def test_p_won_within_days_is_calibrated_in_every_decile(scorer_run: ScorerRun, days: int) -> None:
    """Issue 3's bar: per decile of predicted P(won within d days), the mean prediction is
    within max(0.02, 3 standard errors of the mean gap) of the mean true probability."""
    predicted = scorer_run.scorer.score_frame(scorer_run.leads)[f"p_won_{days}d"].to_numpy()
    truth = scorer_run.truth[f"p_won_{days}d"].to_numpy()
    decile = np.argsort(np.argsort(predicted, kind="stable")) * 10 // len(predicted)
    for d in range(10):
        gap = predicted[decile == d] - truth[decile == d]
        tolerance = max(0.02, 3 * gap.std(ddof=1) / np.sqrt(gap.size))
        assert abs(gap.mean()) <= tolerance, (d, gap.mean(), tolerance)


def test_records_score_exactly_as_the_frame(scorer_run: ScorerRun) -> None:
    """The API's path (records, no pandas) and batch scoring's (a frame) give the same numbers,
    reasons included."""
    leads = scorer_run.leads.head(300)
    features = [c for c in leads.columns if c in scorer_run.scorer.attributes]
    frame = leads[features].astype(object).where(leads[features].notna(), None)
    records: list[dict[str, object]] = [
        {str(k): v for k, v in row.items()} for row in frame.to_dict("records")
    ]
    by_records = scorer_run.scorer.score(records, created=created_ns(leads), explain=True)
    by_frame = scorer_run.scorer.score(leads, explain=True)
    for name in SCORE_COLUMNS[1:]:
        np.testing.assert_array_equal(by_records.column(name), by_frame.column(name), err_msg=name)
    assert by_records.reasons == by_frame.reasons


def test_contributions_and_base_value_sum_to_the_raw_score(scorer_run: ScorerRun) -> None:
    conversion = scorer_run.scorer.conversion
    leads = scorer_run.leads.head(500)
    parts = conversion.contribution_array(leads)
    np.testing.assert_allclose(parts.sum(axis=1), conversion.log_odds(leads), atol=1e-9)


def test_reasons_name_the_strongest_effects_with_their_direction(scorer_run: ScorerRun) -> None:
    scores = scorer_run.scorer.score(scorer_run.leads.head(200), explain=True)
    assert scores.reasons is not None
    for positive, negative in scores.reasons:
        assert all(r.effect > 0 and r.points >= 0 and "raises" in r.text for r in positive)
        assert all(r.effect < 0 and r.points <= 0 and "lowers" in r.text for r in negative)
        assert [r.effect for r in positive] == sorted((r.effect for r in positive), reverse=True)
        assert [r.effect for r in negative] == sorted(r.effect for r in negative)
    assert any(positive and negative for positive, negative in scores.reasons)


def test_grades_split_training_leads_ten_twenty_thirty_forty(scorer_run: ScorerRun) -> None:
    scorer = scorer_run.scorer
    grades = pd.Series(scorer.grade_of(scorer.conversion.training_scores_))
    shares = grades.value_counts(normalize=True).reindex(list("ABCD"), fill_value=0)
    expected = np.diff([0.0, *GRADE_TOP_SHARES, 1.0])
    np.testing.assert_allclose(shares.to_numpy(), expected, atol=0.01)
    # Better grades mean higher probabilities on unseen leads too.
    frame = scorer.score_frame(scorer_run.leads)
    means = frame.groupby("grade")["probability"].mean()
    assert means["A"] > means["B"] > means["C"] > means["D"]


def test_unknown_missing_and_extra_attributes_still_score(scorer_run: ScorerRun) -> None:
    scorer = scorer_run.scorer
    created = created_ns(scorer_run.leads.head(3))
    records: list[dict[str, object]] = [
        {"industry": "never-seen-industry", "employees": 40},
        {},
        {"favourite_colour": "green", "web_visits": "not a number"},
    ]
    scores = scorer.score(records, created=created, explain=True)
    assert np.isfinite(scores.probability).all()
    assert np.isfinite(scores.p_won_90d).all()
    assert np.isfinite(scores.expected_value).all()


def test_without_cycle_and_value_models_those_columns_are_empty(scorer_run: ScorerRun) -> None:
    scorer = LeadScorer(scorer_run.scorer.conversion)
    frame = scorer.score_frame(scorer_run.leads.head(10))
    assert frame[["p_won_30d", "p_won_90d", "expected_days_to_close"]].isna().all().all()
    assert frame["expected_value"].isna().all()
    assert frame["probability"].notna().all()
