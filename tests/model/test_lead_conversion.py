"""Lead conversion on synthetic funnels: quality against the truth, and behaviour a user sees."""

from __future__ import annotations

import itertools
import pickle
from dataclasses import replace

import cloudpickle  # type: ignore[import-untyped]
import numpy as np
import pandas as pd
import pytest

from scoring.conversion import BASE_VALUE, LeadConversionModel
from scoring.errors import FunnelcastInputError
from scoring.features import OTHER_LEVEL, FeatureSpec, shared_codes
from tests.model.conftest import SyntheticRun, synthetic_funnel
from training.lead_conversion import choose_champion, train_lead_conversion
from training.lead_conversion_candidates import (
    baseline_sample,
    lightgbm_settings,
    validation_folds,
)
from training.metrics import (
    calibration_curve,
    classification_metrics,
    cumulative_gain,
    expected_calibration_error,
)


def _evaluation_leads(run: SyntheticRun) -> pd.DataFrame:
    leads = run.funnel.leads
    return leads[leads["lead_id"].isin(run.result.evaluation_lead_ids)].reset_index(drop=True)


# --- quality bars (issue 3) -------------------------------------------------------------------


def test_synthetic_auc_is_close_to_the_truth_and_calibrated(large_run: SyntheticRun) -> None:
    result = large_run.result
    truth = large_run.truth.loc[result.evaluation_lead_ids, "p_won_horizon"].to_numpy()
    true_auc = classification_metrics(result.evaluation_labels, truth)["roc_auc"]
    champion = result.metrics[result.champion_kind]
    assert result.split_kind == "time"
    assert result.champion_kind == "lightgbm"
    assert champion["roc_auc"] >= true_auc - 0.02, (champion["roc_auc"], true_auc)
    assert champion["ece"] <= 0.02, champion["ece"]


def test_every_candidate_is_judged_on_the_later_slice(large_run: SyntheticRun) -> None:
    result = large_run.result
    assert set(result.metrics) == {"lightgbm", "logistic_regression", "naive_bayes"}
    assert result.champion_kind == choose_champion(result.metrics)
    created = large_run.funnel.leads.set_index("lead_id")["created_at"]
    assert result.validation_date is not None
    assert (created.loc[result.evaluation_lead_ids] >= result.validation_date).all()
    assert result.rows["train"] + result.rows["test"] + result.rows["excluded_unsettled"] == len(
        large_run.funnel.leads
    )
    assert result.rows["excluded_unsettled"] > 0  # young open leads are left out, not lost
    for kind, p in result.evaluation_predictions.items():
        assert p.shape == result.evaluation_labels.shape, kind
        assert result.candidates[kind].kind == kind


def test_same_seed_same_metrics(small_run: SyntheticRun) -> None:
    again = train_lead_conversion(small_run.funnel, seed=0)
    assert again.metrics == small_run.result.metrics
    np.testing.assert_array_equal(
        again.evaluation_predictions["lightgbm"],
        small_run.result.evaluation_predictions["lightgbm"],
    )


def test_a_candidate_trained_on_5_percent_is_clearly_worse(small_run: SyntheticRun) -> None:
    weak = train_lead_conversion(small_run.funnel, seed=0, train_fraction=0.05)
    full = small_run.result
    assert weak.rows["train"] < 0.06 * full.rows["train"]
    assert weak.rows["test"] == full.rows["test"]
    assert weak.metrics["lightgbm"]["roc_auc"] < full.metrics["lightgbm"]["roc_auc"] - 0.02


def test_tuning_searches_within_its_budget(small_run: SyntheticRun) -> None:
    tuned = train_lead_conversion(small_run.funnel, seed=0, tune=True, tune_seconds=1.0)
    assert tuned.params["tuned"] and tuned.params["tuning"]["trials"] >= 1
    assert tuned.params["tuning"]["seconds"] < 30
    assert tuned.metrics["lightgbm"]["roc_auc"] > 0.7


# --- behaviour of the model object ------------------------------------------------------------


def test_unseen_category_counts_as_missing(small_run: SyntheticRun) -> None:
    model = small_run.result.champion
    leads = _evaluation_leads(small_run).head(200)
    unseen = leads.assign(industry="space mining")
    missing = leads.assign(industry=None)
    p_unseen = model.predict_proba(unseen)
    assert np.isfinite(p_unseen).all()
    np.testing.assert_allclose(p_unseen, model.predict_proba(missing))


def test_missing_and_extra_columns_are_tolerated(small_run: SyntheticRun) -> None:
    model = small_run.result.champion
    leads = _evaluation_leads(small_run).head(200)
    p = model.predict_proba(leads)
    extra = leads.assign(favourite_colour="teal", lead_score_from_crm=99.0)
    np.testing.assert_array_equal(model.predict_proba(extra), p)
    without = leads.drop(columns=["web_visits", "region"])
    as_missing = leads.assign(web_visits=np.nan, region=None)
    np.testing.assert_allclose(model.predict_proba(without), model.predict_proba(as_missing))
    only_id = leads[["lead_id"]]
    assert np.isfinite(model.predict_proba(only_id)).all()


def test_more_web_visits_raise_the_win_probability(small_run: SyntheticRun) -> None:
    # The generator's effect of visits is increasing and saturating: 1.6 (1 - exp(-v / 3)).
    model = small_run.result.champion
    leads = _evaluation_leads(small_run).head(500)
    means = [model.predict_proba(leads.assign(web_visits=v)).mean() for v in (0, 2, 5, 10)]
    assert all(later >= earlier - 0.002 for earlier, later in itertools.pairwise(means))
    assert means[-1] > means[0] + 0.05, means


def test_contributions_sum_to_the_raw_score(small_run: SyntheticRun) -> None:
    leads = _evaluation_leads(small_run).head(100)
    for kind, model in small_run.result.candidates.items():
        parts = model.contributions(leads)
        assert list(parts.columns) == [*model.feature_names, BASE_VALUE], kind
        assert list(parts.index) == list(leads["lead_id"]), kind
        np.testing.assert_allclose(
            parts.to_numpy().sum(axis=1), model.log_odds(leads), atol=1e-9, err_msg=kind
        )


def test_pickling_round_trip_keeps_scores(small_run: SyntheticRun) -> None:
    model = small_run.result.champion
    leads = _evaluation_leads(small_run).head(300)
    for dumps, loads in ((cloudpickle.dumps, pickle.loads), (pickle.dumps, pickle.loads)):
        restored: LeadConversionModel = loads(dumps(model))
        np.testing.assert_array_equal(restored.predict_proba(leads), model.predict_proba(leads))
        assert restored.feature_names == model.feature_names
        assert restored.horizon_days == model.horizon_days == 180
        np.testing.assert_array_equal(restored.training_scores_, model.training_scores_)


def test_training_scores_are_sorted_probabilities(small_run: SyntheticRun) -> None:
    result = small_run.result
    scores = result.champion.training_scores_
    assert len(scores) == result.rows["train"]
    assert (np.diff(scores) >= 0).all() and scores[0] >= 0 and scores[-1] <= 1
    assert result.champion.percentile(np.array([0.0, 1.0])).tolist() == [0.0, 100.0]


def test_a_funnel_without_features_is_refused(small_run: SyntheticRun) -> None:
    with pytest.raises(FunnelcastInputError, match="no features"):
        train_lead_conversion(replace(small_run.funnel, features=()), seed=0)


# --- features and metrics -----------------------------------------------------------------------


def test_feature_spec_learns_kinds_levels_and_a_fixed_order() -> None:
    leads = pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in range(40)],
            "region": ["Nordics"] * 25 + ["APAC"] * 12 + ["Mars"] * 3,
            "employees": np.arange(40, dtype=np.int64),
            "demo_requested": [True, False] * 20,
        }
    )
    spec = FeatureSpec(["region", "employees", "demo_requested"], min_level_count=10).fit(leads)
    assert spec.numeric_features_ == ["employees"]
    assert spec.categorical_features_ == ["region", "demo_requested"]
    assert spec.categories_["region"] == ["APAC", "Nordics", OTHER_LEVEL]
    assert spec.categories_["demo_requested"] == ["False", "True"]
    new = pd.DataFrame({"region": ["Mars", "Atlantis", None], "noise": [1, 2, 3]})
    matrix = spec.transform(new)
    assert list(matrix.columns) == ["region", "employees", "demo_requested"]
    assert matrix["region"].tolist()[0] == OTHER_LEVEL
    assert matrix["region"].isna().tolist() == [False, True, True]
    assert list(matrix["region"].cat.categories) == spec.categories_["region"]
    assert matrix["employees"].dtype == np.float64 and matrix["employees"].isna().all()
    assert matrix["demo_requested"].isna().all()


def test_shared_codes_encode_records_once_per_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside `shared_codes`, specs that encode alike share one encoding of a records list;
    a spec with other levels, other records, or a call outside the block get their own."""
    leads = pd.DataFrame({"region": ["Nordics"] * 20 + ["APAC"] * 20, "employees": np.arange(40.0)})
    one = FeatureSpec(["region", "employees"]).fit(leads)
    alike = FeatureSpec(["region", "employees"]).fit(leads.iloc[::-1])  # the same levels
    other = FeatureSpec(["region", "employees"]).fit(leads.replace("APAC", "EMEA"))
    records: list[dict[str, object]] = [
        {"region": "APAC", "employees": 3},
        {"region": "EMEA", "employees": None},
    ] * 5
    expected = {id(spec): spec.codes(records) for spec in (one, alike, other)}
    assert not np.array_equal(expected[id(one)], expected[id(other)], equal_nan=True)
    encoded: list[int] = []
    plain = FeatureSpec._codes_of_records

    def counted(self: FeatureSpec, given: list[dict[str, object]]) -> object:
        encoded.append(id(self))
        return plain(self, given)

    monkeypatch.setattr(FeatureSpec, "_codes_of_records", counted)
    with shared_codes():
        first = one.codes(records)
        first[0, 0] = -1.0  # each caller's copy is its own
        for spec in (one, alike, other):
            np.testing.assert_array_equal(spec.codes(records), expected[id(spec)])
        with shared_codes():  # nested: still the outer block's encodings
            np.testing.assert_array_equal(alike.codes(records), expected[id(alike)])
        np.testing.assert_array_equal(one.codes(list(records)), expected[id(one)])
    assert encoded == [id(one), id(other), id(one)]
    np.testing.assert_array_equal(alike.codes(records), expected[id(alike)])
    assert encoded[-1] == id(alike)


@pytest.mark.parametrize("copies", [1, 3])  # 4 and 12 records: cell by cell, then by column
def test_codes_of_records_equal_codes_of_a_frame_for_awkward_values(copies: int) -> None:
    leads = pd.DataFrame(
        {
            "region": ["Nordics"] * 25 + ["APAC"] * 12 + ["Mars"] * 3,
            "employees": np.arange(40, dtype=np.float64),
            "demo_requested": [True, False] * 20,
        }
    )
    spec = FeatureSpec(["region", "employees", "demo_requested"], min_level_count=10).fit(leads)
    awkward: list[dict[str, object]] = [
        {"region": "Mars", "employees": "12", "demo_requested": "True"},  # rare; numeric text
        {"region": None, "employees": float("inf"), "demo_requested": True},
        {"region": float("nan"), "employees": -3, "demo_requested": False},
        {"region": 7, "employees": "many", "demo_requested": None, "other": 1},  # unseen; text
    ] * copies
    by_records = spec.codes(awkward)
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "employees"} for r in awkward])
    frame["employees"] = pd.Series([r["employees"] for r in awkward], dtype=object)
    np.testing.assert_array_equal(by_records, spec.codes(frame))
    plain: list[dict[str, object]] = [{"employees": 3, "region": "APAC"}, {"employees": None}]
    plain *= 4 * copies
    np.testing.assert_array_equal(spec.codes(plain), spec.codes(pd.DataFrame(plain)))
    huge: list[dict[str, object]] = [{"employees": 10**400}, {"employees": 5}]  # beyond floats
    huge *= 4 * copies
    assert np.isnan(spec.codes(huge)[0, 1]) and spec.codes(huge)[1, 1] == 5


def test_metrics_on_a_known_example() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    p = np.array([0.9, 0.8, 0.7, 0.4, 0.3, 0.3, 0.2, 0.2, 0.1, 0.05])
    metrics = classification_metrics(y, p)
    assert metrics["lift_at_10"] == pytest.approx(1 / 0.3)  # the top lead is a win
    assert metrics["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert metrics["roc_auc"] == pytest.approx(13 / 21)  # pairs ranked right / all pairs
    curve = calibration_curve(y, p, bins=5)
    assert curve["leads"].tolist() == [2] * 5
    assert curve["observed_rate"].tolist() == [0.5, 0.0, 0.0, 0.5, 0.5]
    assert expected_calibration_error(y, p, bins=1) == pytest.approx(abs(p.mean() - 0.3))
    gain = cumulative_gain(y, p, points=10)
    assert gain["share_of_wins"].iloc[0] == 0 and gain["share_of_wins"].iloc[-1] == 1
    assert gain["share_of_wins"].iloc[1] == pytest.approx(1 / 3)
    assert np.isnan(classification_metrics(np.ones(4), np.full(4, 0.5))["roc_auc"])


def test_champion_prefers_the_lower_brier_when_auc_ties() -> None:
    metrics = {
        "lightgbm": {"roc_auc": 0.8010, "brier": 0.150},
        "logistic_regression": {"roc_auc": 0.8000, "brier": 0.140},
        "naive_bayes": {"roc_auc": 0.7000, "brier": 0.100},
    }
    assert choose_champion(metrics) == "logistic_regression"
    metrics["lightgbm"]["roc_auc"] = 0.8100
    assert choose_champion(metrics) == "lightgbm"


def test_small_funnel_helper_is_canonical() -> None:
    funnel, truth = synthetic_funnel(300, seed=1)
    assert "owner" not in funnel.features and "web_visits" in funnel.features
    assert len(truth) == len(funnel.leads)


def test_large_training_slices_get_lighter_settings() -> None:
    # From 200,000 training leads on: twice the learning rate, 3 undated folds instead of 5,
    # baselines on a stratified 200,000; smaller slices keep the defaults. Threads as asked.
    assert lightgbm_settings(training_leads=199_999)["learning_rate"] == 0.05
    large = lightgbm_settings({"num_leaves": 15}, training_leads=200_000, threads=2)
    assert large["learning_rate"] == 0.1 and large["num_threads"] == 2
    assert large["num_leaves"] == 15 and lightgbm_settings()["num_threads"] == 1
    labels = np.tile([1, 0, 0, 0], 62_500)
    undated = pd.DataFrame({"label": labels})
    assert len(validation_folds(undated.head(40_000), dated=False, seed=0)[0]) == 5
    assert len(validation_folds(undated, dated=False, seed=0)[0]) == 3
    sample = baseline_sample(undated, seed=0)
    assert len(sample) == 200_000 and sample["label"].mean() == pytest.approx(0.25)
    assert len(baseline_sample(undated.head(1_000), seed=0)) == 1_000
