"""GET /v1/segments: who to target, for viewers; the figures are `rank_segments`' on the stored
funnel, and bad columns are 422s naming the parameter."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest

from scoring.target_segments import decided_leads, default_segment_columns, rank_segments
from tests.api.conftest import Api, ApiFactory, TrainedHome, copy_home


def _get(api: Api, query: str = "", role: str | None = "viewer") -> httpx.Response:
    headers = api.headers(role) if role else {}
    response: httpx.Response = api.client.get(f"/v1/segments?{query}", headers=headers)
    return response


def _figure(value: object) -> float | None:
    number = float(value)  # type: ignore[arg-type]
    return None if math.isnan(number) else number


@pytest.mark.parametrize(
    ("query", "columns", "min_leads"),
    [
        ("", None, 30),
        ("columns=industry&columns=source&min_leads=50", ["industry", "source"], 50),
    ],
)
def test_the_ranking_is_rank_segments(
    shared_api: Api,
    trained_home: TrainedHome,
    query: str,
    columns: list[str] | None,
    min_leads: int,
) -> None:
    response = _get(shared_api, query)

    assert response.status_code == 200, response.text
    body = response.json()
    funnel = trained_home.funnel
    expected = rank_segments(funnel, columns, min_leads=min_leads)
    assert body["columns"] == (columns or default_segment_columns(funnel))
    assert body["min_leads"] == min_leads
    assert body["ranked_by"] == "expected_value_per_lead"
    assert body["horizon_days"] == funnel.horizon_days
    assert body["decided_leads"] == len(decided_leads(funnel))
    assert len(body["segments"]) == len(expected) > 0
    for got, row in zip(body["segments"], expected.to_dict("records"), strict=True):
        assert got["segment"] == row["segment"]
        assert (got["leads"], got["won"]) == (row["leads"], row["won"])
        for name in (
            "conversion_rate",
            "conversion_p10",
            "conversion_p90",
            "avg_deal_size",
            "expected_value_per_lead",
            "expected_value_p10",
            "expected_value_p90",
        ):
            assert got[name] == _figure(row[name]), name
        assert got["conversion_p10"] <= got["conversion_p90"]
        assert got["leads"] >= min_leads
    values = [s["expected_value_per_lead"] for s in body["segments"]]
    known = [v for v in values if v is not None]
    assert values == sorted(known, reverse=True) + [None] * (len(values) - len(known))


@pytest.mark.parametrize(("role", "status"), [("viewer", 200), ("manager", 200),
                                              ("admin", 200), ("integration", 403),
                                              (None, 401)])  # fmt: skip
def test_viewers_and_up_may_read_segments(shared_api: Api, role: str | None, status: int) -> None:
    assert _get(shared_api, "min_leads=100", role).status_code == status


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("columns=no_such_column", "unknown segment column(s) no_such_column"),
        ("columns=region&columns=region", "region given more than once"),
        ("columns=a&columns=b&columns=c&columns=d&columns=e", "5 columns given; at most 4"),
    ],
)
def test_bad_columns_are_422s_naming_the_parameter(
    shared_api: Api, query: str, message: str
) -> None:
    response = _get(shared_api, query)

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert message in error["message"]
    assert error["details"][0]["location"] == ["query", "columns"]


@pytest.mark.parametrize(
    "query", ["min_leads=0", "min_leads=x", "columns=", "min_lead=5", "min_leads=5&min_leads=6"]
)
def test_bad_parameters_are_422s(shared_api: Api, query: str) -> None:
    response = _get(shared_api, query)

    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["location"][0] == "query"


def test_an_empty_store_is_a_503_saying_what_to_load(
    start_api: ApiFactory, trained_home: TrainedHome, tmp_path: Path
) -> None:
    api = start_api(home=copy_home(trained_home.empty, tmp_path))

    response = _get(api)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_data"
