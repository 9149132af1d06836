"""Leads and funnel events pushed one at a time (a CRM through the API), validated exactly as a
file ingest is: the same data contract, the same store transaction, the same row hashes.

A push needs a data set in the store already (its stages, features and horizon come from the
history the models learned on); the lead's attributes are kept as given.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from scoring.contract import validate_leads, validate_stage_events
from scoring.errors import FunnelcastInputError
from scoring.funnel import DEFAULT_HORIZON_DAYS, LEAD_COLUMNS, Funnel
from scoring.store import FunnelStore

EventKind = Literal["stage", "won", "lost"]


class LeadNotFoundError(FunnelcastInputError):
    """The lead an event is for is not in the store."""


class EmptyStoreError(FunnelcastInputError):
    """The store holds no data set to push leads into yet."""


@dataclass(frozen=True)
class PushedLead:
    lead_id: str
    created: bool
    outcome: str
    stage: str | None


def _meta(store: FunnelStore) -> dict[str, Any]:
    meta = store.meta()
    if not meta:
        raise EmptyStoreError(
            "the funnel store holds no data set yet: ingest the funnel history first "
            "(`funnelcast ingest`), then push leads"
        )
    return meta


def _write(
    store: FunnelStore,
    meta: dict[str, Any],
    row: dict[str, Any],
    source: str,
    events: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Validate one lead row (and its new stage events) and store them in one transaction."""
    leads = validate_leads(pd.DataFrame([row]), source, dated=bool(meta.get("dated", True)))
    stages = tuple(meta.get("stages", ()))
    if events is not None:
        events = validate_stage_events(events, source, leads["lead_id"], stages)
    funnel = Funnel(
        leads=leads,
        stage_events=events,
        dated=bool(meta.get("dated", True)),
        horizon_days=int(meta.get("horizon_days", DEFAULT_HORIZON_DAYS)),
        observed_until=pd.Timestamp(dt.datetime.now(dt.UTC).replace(tzinfo=None)),
        stages=stages,
        features=tuple(meta.get("features", ())),
        name=str(meta.get("dataset")),
    )
    store.ingest(funnel, source=source)
    return leads


def push_lead(
    store: FunnelStore,
    lead_id: str,
    fields: Mapping[str, object],
    attributes: Mapping[str, object],
) -> PushedLead:
    """Create or replace a lead (its canonical fields and attributes).

    Raises:
        FunnelcastInputError: the store is empty, or an attribute is named like a canonical
            column.
        DataContractError: the lead breaks the data contract (e.g. closed before created).
    """
    meta = _meta(store)
    clashes = sorted(set(attributes) & set(LEAD_COLUMNS))
    if clashes:
        raise FunnelcastInputError(
            f"lead {lead_id}: attributes {clashes} are named like lead fields; send them as "
            "fields, not attributes"
        )
    existed = not store.load_leads([lead_id]).empty
    row = {"lead_id": lead_id, **fields, **attributes}
    leads = _write(store, meta, row, f"lead {lead_id}")
    stored = leads.iloc[0]
    return PushedLead(lead_id, not existed, str(stored["outcome"]), stored["stage"])


def push_event(
    store: FunnelStore,
    lead_id: str,
    kind: EventKind,
    at: dt.datetime,
    stage: str | None = None,
    amount: float | None = None,
) -> PushedLead:
    """Record a stage change, or a won / lost close, of a lead already in the store.

    Raises:
        LeadNotFoundError: no such lead.
        FunnelcastInputError / DataContractError: the event does not fit the lead (a stage
            the data set does not know, a close before the lead was created, ...).
    """
    meta = _meta(store)
    found = store.load_leads([lead_id])
    if found.empty:
        raise LeadNotFoundError(f"lead {lead_id} is not in the funnel store; PUT it first")
    row: dict[str, Any] = {
        str(key): (None if _missing(value) else value) for key, value in found.iloc[0].items()
    }
    events = None
    if kind == "stage":
        if not stage:
            raise FunnelcastInputError(f"lead {lead_id}: a stage event needs `stage`")
        row["stage"] = stage
        events = pd.DataFrame([{"lead_id": lead_id, "stage": stage, "entered_at": at}])
    else:
        if stage is not None:
            raise FunnelcastInputError(f"lead {lead_id}: a {kind} event takes no `stage`")
        row.update(outcome=kind, closed_at=at, stage=kind)
        if amount is not None:
            row["amount"] = amount
    leads = _write(store, meta, row, f"lead {lead_id} {kind} event", events)
    stored = leads.iloc[0]
    return PushedLead(lead_id, False, str(stored["outcome"]), stored["stage"])


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))
