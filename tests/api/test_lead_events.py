"""A CRM pushes leads and their funnel events: role integration, the data contract's checks as
422s, and every accepted push in the funnel store."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from scoring.api_keys import ROLES
from scoring.funnel import Funnel
from scoring.store import FunnelStore
from tests.api.conftest import Api, TrainedHome


def _stored(api: Api) -> Funnel:
    """The funnel as a fresh reader of the app's store sees it."""
    store = FunnelStore.open(api.settings.store_url)
    try:
        return store.load()
    finally:
        store.close()


def _lead(funnel: Funnel, lead_id: str) -> pd.Series:
    rows = funnel.leads.loc[funnel.leads["lead_id"] == lead_id]
    assert len(rows) == 1, f"{lead_id} is not in the store once"
    row: pd.Series = rows.iloc[0]
    return row


NEW_LEAD: dict[str, Any] = {
    "created_at": "2026-06-01T09:30:00Z",
    "owner": "rep-7",
    "attributes": {
        "industry": "software",
        "company_size": "51-200",
        "employees": 120,
        "region": "Nordics",
        "source": "referral",
        "seniority": "director",
        "email_opens": 4,
        "web_visits": 6,
        "demo_requested": True,
    },
}


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] and error["message"]
    return error


def test_pushes_are_for_integrations(api: Api) -> None:
    event = {"kind": "stage", "at": "2026-06-02T10:00:00Z", "stage": "qualified"}
    for role in ROLES:
        put = api.client.put("/v1/leads/CRM-roles", json=NEW_LEAD, headers=api.headers(role))
        post = api.client.post("/v1/leads/CRM-roles/events", json=event, headers=api.headers(role))
        expected = 200 if role == "integration" else 403
        assert (put.status_code, post.status_code) == (expected, expected), role
    for headers in ({}, {"Authorization": "Bearer fck_not-a-key"}):
        response = api.client.put("/v1/leads/CRM-roles", json=NEW_LEAD, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"


def test_a_new_lead_is_stored_then_updated(api: Api) -> None:
    response = api.client.put("/v1/leads/CRM-1", json=NEW_LEAD, headers=api.headers("integration"))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "lead_id": "CRM-1",
        "created": True,
        "outcome": "open",
        "stage": None,
    }
    row = _lead(_stored(api), "CRM-1")
    assert row["created_at"] == pd.Timestamp("2026-06-01 09:30:00")
    assert row["owner"] == "rep-7"
    assert row["industry"] == "software" and row["employees"] == 120
    assert row["outcome"] == "open" and pd.isna(row["closed_at"])

    changed = {**NEW_LEAD, "attributes": {**NEW_LEAD["attributes"], "web_visits": 20}}
    again = api.client.put("/v1/leads/CRM-1", json=changed, headers=api.headers("integration"))
    assert again.status_code == 200
    assert again.json()["created"] is False
    assert _lead(_stored(api), "CRM-1")["web_visits"] == 20


def test_an_existing_lead_can_be_replaced(api: Api, trained_home: TrainedHome) -> None:
    existing = trained_home.funnel.leads.iloc[0]
    lead_id = str(existing["lead_id"])
    before = len(_stored(api).leads)
    response = api.client.put(
        f"/v1/leads/{lead_id}", json=NEW_LEAD, headers=api.headers("integration")
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] is False
    funnel = _stored(api)
    assert len(funnel.leads) == before
    assert _lead(funnel, lead_id)["source"] == "referral"


def test_stage_and_won_events_move_the_lead(api: Api) -> None:
    headers = api.headers("integration")
    assert api.client.put("/v1/leads/CRM-2", json=NEW_LEAD, headers=headers).status_code == 200
    stage = {"kind": "stage", "at": "2026-06-03T10:00:00Z", "stage": "qualified"}
    response = api.client.post("/v1/leads/CRM-2/events", json=stage, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["stage"] == "qualified" and response.json()["outcome"] == "open"
    won = {"kind": "won", "at": "2026-06-20T16:00:00+02:00", "amount": 12500.0}
    response = api.client.post("/v1/leads/CRM-2/events", json=won, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "won"

    funnel = _stored(api)
    row = _lead(funnel, "CRM-2")
    assert row["outcome"] == "won"
    assert row["closed_at"] == pd.Timestamp("2026-06-20 14:00:00")  # stored in UTC
    assert row["amount"] == 12500.0
    assert row["industry"] == "software"  # the attributes survive an event
    assert funnel.stage_events is not None
    events = funnel.stage_events.loc[funnel.stage_events["lead_id"] == "CRM-2"]
    assert "qualified" in set(events["stage"])


def test_a_lost_event_closes_the_lead(api: Api) -> None:
    headers = api.headers("integration")
    api.client.put("/v1/leads/CRM-3", json=NEW_LEAD, headers=headers)
    lost = {"kind": "lost", "at": "2026-06-10T12:00:00Z"}
    response = api.client.post("/v1/leads/CRM-3/events", json=lost, headers=headers)
    assert response.status_code == 200, response.text
    row = _lead(_stored(api), "CRM-3")
    assert row["outcome"] == "lost" and row["closed_at"] == pd.Timestamp("2026-06-10 12:00")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"created_at": 12}, "created_at"),
        ({"created_at": "soon"}, "created_at"),
        ({"created_at": "9999-12-31T00:00:00Z"}, "created_at"),
        ({"outcome": "maybe"}, "outcome"),
        ({"amount": "big"}, "amount"),
        ({"amount": -5}, "amount"),
        ({"attributes": {"employees": [1, 2]}}, "attributes"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_malformed_lead_is_422_naming_the_field(
    api: Api, change: dict[str, Any], field: str
) -> None:
    body = {**NEW_LEAD, **change}
    response = api.client.put("/v1/leads/CRM-bad", json=body, headers=api.headers("integration"))
    error = _error(response, 422)
    assert any(field in map(str, d["location"]) for d in error["details"]), error
    assert _stored(api).leads["lead_id"].eq("CRM-bad").sum() == 0


def test_a_lead_missing_created_at_is_422(api: Api) -> None:
    body = {k: v for k, v in NEW_LEAD.items() if k != "created_at"}
    response = api.client.put("/v1/leads/CRM-bad", json=body, headers=api.headers("integration"))
    error = _error(response, 422)
    assert error["details"][0]["location"] == ["body", "created_at"]


@pytest.mark.parametrize(
    "change",
    [
        {"outcome": "won", "closed_at": "2026-05-01T00:00:00Z"},  # closed before created
        {"attributes": {"outcome": "won"}},  # an attribute named like a lead field
    ],
)
def test_a_lead_breaking_the_data_contract_is_422(api: Api, change: dict[str, Any]) -> None:
    response = api.client.put(
        "/v1/leads/CRM-bad", json={**NEW_LEAD, **change}, headers=api.headers("integration")
    )
    error = _error(response, 422)
    assert "CRM-bad" in error["message"]
    assert _stored(api).leads["lead_id"].eq("CRM-bad").sum() == 0


@pytest.mark.parametrize(
    "event",
    [
        {"kind": "stage", "at": "2026-06-03T10:00:00Z"},  # no stage
        {"kind": "stage", "at": "2026-06-03T10:00:00Z", "stage": "teleported"},
        {"kind": "won", "at": "2026-05-01T00:00:00Z"},  # before the lead was created
        {"kind": "won", "at": "2026-06-05T00:00:00Z", "stage": "meeting"},
        {"kind": "promoted", "at": "2026-06-05T00:00:00Z"},
        {"kind": "won", "at": 5},
        {"kind": "lost", "at": "2300-01-01T00:00:00Z"},
        {"kind": "won", "at": "2026-06-05T00:00:00Z", "amount": "lots"},
    ],
)
def test_an_event_that_does_not_fit_is_422(api: Api, event: dict[str, Any]) -> None:
    headers = api.headers("integration")
    assert api.client.put("/v1/leads/CRM-4", json=NEW_LEAD, headers=headers).status_code == 200
    response = api.client.post("/v1/leads/CRM-4/events", json=event, headers=headers)
    _error(response, 422)
    row = _lead(_stored(api), "CRM-4")
    assert row["outcome"] == "open" and pd.isna(row["stage"])


def test_an_event_for_an_unknown_lead_is_404(api: Api) -> None:
    event = {"kind": "lost", "at": "2026-06-10T12:00:00Z"}
    response = api.client.post(
        "/v1/leads/CRM-nobody/events", json=event, headers=api.headers("integration")
    )
    error = _error(response, 404)
    assert "CRM-nobody" in error["message"]


def test_a_push_into_an_empty_store_says_to_ingest_first(empty_api: Api) -> None:
    response = empty_api.client.put(
        "/v1/leads/CRM-1", json=NEW_LEAD, headers=empty_api.headers("integration")
    )
    error = _error(response, 409)
    assert "ingest" in error["message"]


def test_a_pushed_lead_can_be_scored_with_what_was_pushed(api: Api) -> None:
    headers = api.headers("integration")
    api.client.put("/v1/leads/CRM-5", json=NEW_LEAD, headers=headers)
    lead = {"lead_id": "CRM-5", **{k: NEW_LEAD[k] for k in ("created_at", "attributes")}}
    response = api.post("/v1/leads/score", json={"leads": [lead]})
    assert response.status_code == 200
    assert response.json()["ignored_attributes"] == []
