"""What a CRM gets back from score and rank: the registered model's numbers, consistent with
each other, explained exactly, ranked correctly, and remembered in the lead's history."""

from __future__ import annotations

import math
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from scoring.lead_scores import LeadScorer
from tests.api.conftest import Api, TrainedHome

GRADE_ORDER = "ABCD"


@pytest.fixture
def api(shared_api: Api) -> Api:
    """Scoring only adds to the history of the leads scored (each test uses its own leads for
    history): one app serves the whole module."""
    return shared_api


def _scorer(api: Api) -> LeadScorer:
    scorer: LeadScorer | None = api.app.state.service.loaded.scorer
    assert scorer is not None
    return scorer


def _frame(leads: list[dict[str, Any]], features: tuple[str, ...]) -> pd.DataFrame:
    """The leads as the registered model takes them: lead_id, created_at and the attributes."""
    rows = [
        {
            "lead_id": lead["lead_id"],
            "created_at": pd.Timestamp(lead["created_at"]).tz_convert(None),
            **{name: lead["attributes"].get(name) for name in features},
        }
        for lead in leads
    ]
    frame = pd.DataFrame(rows)
    numeric = ["employees", "email_opens", "web_visits"]
    return frame.astype(dict.fromkeys(numeric, "float64"))


def _odd_leads(leads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Leads a CRM really sends: a category never seen in training, attributes left out."""
    unseen = {**leads[0], "lead_id": "ODD-1"}
    unseen["attributes"] = {**leads[0]["attributes"], "industry": "space_mining"}
    sparse = {"lead_id": "ODD-2", "created_at": leads[1]["created_at"], "attributes": {}}
    nulls = {**leads[2], "lead_id": "ODD-3"}
    nulls["attributes"] = {**leads[2]["attributes"], "employees": None, "source": None}
    return [unseen, sparse, nulls]


def test_probabilities_equal_the_registered_pyfunc_model(
    api: Api, trained_home: TrainedHome, leads: list[dict[str, Any]]
) -> None:
    batch = [*leads[:60], *_odd_leads(leads)]
    response = api.post("/v1/leads/score", json={"leads": batch})
    assert response.status_code == 200, response.text
    served = [r["probability"] for r in response.json()["results"]]

    mlflow.set_tracking_uri(api.settings.tracking_uri)
    model = mlflow.pyfunc.load_model("models:/lead-conversion@champion")
    # Exactly what the API was given: id, creation and attributes (no outcome: it is a new lead).
    expected = model.predict(_frame(batch, trained_home.funnel.features))
    assert expected["lead_id"].tolist() == [lead["lead_id"] for lead in batch]
    np.testing.assert_allclose(served, expected["probability"].to_numpy(), rtol=0, atol=1e-9)


def test_scores_agree_with_each_other(
    api: Api, trained_home: TrainedHome, leads: list[dict[str, Any]]
) -> None:
    response = api.post("/v1/leads/score", json={"leads": leads})
    body = response.json()
    assert body["models"] == trained_home.versions
    assert body["horizon_days"] >= 90
    assert body["ignored_attributes"] == []
    results = body["results"]
    assert [r["lead_id"] for r in results] == [lead["lead_id"] for lead in leads]
    for r in results:
        assert 0.0 <= r["p_won_30d"] <= r["p_won_90d"] <= r["probability"] <= 1.0
        assert r["score"] == round(100 * r["probability"])
        assert 0.0 <= r["percentile"] <= 100.0
        assert 0.0 < r["expected_days_to_close"] <= body["horizon_days"]
        assert 0.0 <= r["expected_value_p10"] <= r["expected_value_p90"]
        assert r["expected_value_p10"] <= r["expected_value"]
        assert "reasons" not in r or r["reasons"] is None
    by_probability = sorted(results, key=lambda r: -r["probability"])
    grades = [GRADE_ORDER.index(r["grade"]) for r in by_probability]
    assert grades == sorted(grades), "a likelier lead never gets a worse grade"
    assert {r["grade"] for r in results} == set(GRADE_ORDER)  # 200 leads span every grade
    percentiles = [r["percentile"] for r in by_probability]
    assert percentiles == sorted(percentiles, reverse=True)


def test_reasons_sum_exactly_to_the_raw_score(api: Api, leads: list[dict[str, Any]]) -> None:
    batch = [*leads[:40], *_odd_leads(leads)]
    response = api.post("/v1/leads/score", json={"leads": batch, "explain": True})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    scorer = _scorer(api)
    features = scorer.conversion.feature_names
    contributions = scorer.conversion.contribution_array([lead["attributes"] for lead in batch])
    assert contributions.shape == (len(batch), len(features) + 1)
    for lead, result, parts in zip(batch, results, contributions, strict=True):
        reasons = result["reasons"]
        assert reasons["base_value"] == pytest.approx(parts[-1], abs=1e-9)
        assert reasons["base_value"] + parts[:-1].sum() == pytest.approx(
            reasons["raw_score"], abs=1e-9
        )
        assert scorer.conversion.probability_of(np.array([reasons["raw_score"]]))[
            0
        ] == pytest.approx(result["probability"], abs=1e-12)
        effects = dict(zip(features, parts[:-1], strict=True))
        for reason in reasons["positive"]:
            assert reason["effect"] > 0 and reason["points"] >= 0
            assert reason["effect"] == pytest.approx(effects[reason["attribute"]], abs=1e-6)
            assert reason["value"] == lead["attributes"].get(reason["attribute"])
            assert "raises" in reason["text"]
        for reason in reasons["negative"]:
            assert reason["effect"] < 0 and reason["points"] <= 0
            assert reason["effect"] == pytest.approx(effects[reason["attribute"]], abs=1e-6)
            assert "lowers" in reason["text"]
        # The top reasons are the strongest attributes each way.
        strongest = sorted(effects.values())
        if reasons["positive"]:
            assert reasons["positive"][0]["effect"] == pytest.approx(strongest[-1], abs=1e-6)
        if reasons["negative"]:
            assert reasons["negative"][0]["effect"] == pytest.approx(strongest[0], abs=1e-6)
        assert len(reasons["positive"]) <= 3 and len(reasons["negative"]) <= 3


def test_explain_does_not_change_the_scores(api: Api, leads: list[dict[str, Any]]) -> None:
    plain = api.post("/v1/leads/score", json={"leads": leads[:20]}).json()["results"]
    explained = api.post("/v1/leads/score", json={"leads": leads[:20], "explain": True})
    for a, b in zip(plain, explained.json()["results"], strict=True):
        assert {k: v for k, v in b.items() if k != "reasons"} == {
            k: v for k, v in a.items() if k != "reasons"
        }


def test_unknown_attributes_are_listed_and_change_nothing(
    api: Api, leads: list[dict[str, Any]]
) -> None:
    extra = [
        {**lead, "attributes": {**lead["attributes"], "favourite_colour": "green", "zz": 3}}
        for lead in leads[:5]
    ]
    plain = api.post("/v1/leads/score", json={"leads": leads[:5]}).json()
    response = api.post("/v1/leads/score", json={"leads": extra})
    assert response.status_code == 200
    assert response.json()["ignored_attributes"] == ["favourite_colour", "zz"]
    assert response.json()["results"] == plain["results"]


def test_rank_orders_by_probability(api: Api, leads: list[dict[str, Any]]) -> None:
    batch = leads[:50]
    scored = api.post("/v1/leads/score", json={"leads": batch}).json()
    response = api.post("/v1/leads/rank", json={"leads": batch})
    assert response.status_code == 200
    body = response.json()
    assert body["models"] == scored["models"]
    results = body["results"]
    assert [r["rank"] for r in results] == list(range(1, len(batch) + 1))
    probabilities = [r["probability"] for r in results]
    assert probabilities == sorted(probabilities, reverse=True)
    by_id = {r["lead_id"]: r for r in scored["results"]}
    assert {r["lead_id"] for r in results} == set(by_id)
    for r in results:
        assert {k: v for k, v in r.items() if k != "rank"} == by_id[r["lead_id"]]


def test_rank_keeps_the_top_k(api: Api, leads: list[dict[str, Any]]) -> None:
    full = api.post("/v1/leads/rank", json={"leads": leads[:50]}).json()["results"]
    top = api.post("/v1/leads/rank", json={"leads": leads[:50], "top_k": 7, "explain": True})
    assert top.status_code == 200
    results = top.json()["results"]
    assert [r["lead_id"] for r in results] == [r["lead_id"] for r in full[:7]]
    assert [r["rank"] for r in results] == list(range(1, 8))
    assert all(r["reasons"]["positive"] or r["reasons"]["negative"] for r in results)
    larger = api.post("/v1/leads/rank", json={"leads": leads[:3], "top_k": 10})
    assert len(larger.json()["results"]) == 3


def _history(api: Api, lead_id: str) -> dict[str, Any]:
    response = api.get(f"/v1/leads/{lead_id}/scores")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_history_grows_with_each_score_and_shows_the_trend(
    api: Api, leads: list[dict[str, Any]]
) -> None:
    scored = api.post("/v1/leads/score", json={"leads": leads}).json()["results"]
    ranked = sorted(zip(leads, scored, strict=True), key=lambda pair: pair[1]["probability"])
    (weak, weak_score), (strong, strong_score) = ranked[0], ranked[-1]
    assert strong_score["probability"] - weak_score["probability"] > 0.1

    lead_id = "CRM-history-1"
    empty = _history(api, lead_id)
    assert empty == {"lead_id": lead_id, "trend": "steady", "scores": []}

    def score_as(lead: dict[str, Any]) -> float:
        body = {"leads": [{**lead, "lead_id": lead_id}]}
        probability: float = api.post("/v1/leads/score", json=body).json()["results"][0][
            "probability"
        ]
        return probability

    served = [score_as(weak), score_as(weak)]
    history = _history(api, lead_id)
    assert len(history["scores"]) == 2 and history["trend"] == "steady"
    served.append(score_as(strong))  # the lead engaged: its chance went up
    history = _history(api, lead_id)
    assert history["trend"] == "improving"
    served.append(score_as(weak))
    history = _history(api, lead_id)
    assert history["trend"] == "declining"
    points = history["scores"]
    assert [p["probability"] for p in points] == pytest.approx(served, abs=1e-12)
    assert [p["model_version"] for p in points] == ["1"] * 4
    assert [p["scored_at"] for p in points] == sorted(p["scored_at"] for p in points)
    assert all(p["score"] == round(100 * p["probability"]) for p in points)

    api.post("/v1/leads/rank", json={"leads": [{**strong, "lead_id": lead_id}]})
    assert len(_history(api, lead_id)["scores"]) == 5  # ranking a lead scores it too


def test_scores_are_finite_json_numbers(api: Api, leads: list[dict[str, Any]]) -> None:
    response = api.post("/v1/leads/score", json={"leads": _odd_leads(leads)})
    assert response.status_code == 200
    for result in response.json()["results"]:
        for name, value in result.items():
            if isinstance(value, float):
                assert math.isfinite(value), name
