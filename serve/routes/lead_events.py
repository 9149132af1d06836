"""A CRM pushes leads, stage changes and won / lost outcomes into the funnel store
(role `integration`), validated as a file ingest is."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from scoring.errors import DataContractError, FunnelcastInputError
from scoring.lead_push import (
    EmptyStoreError,
    LeadNotFoundError,
    PushedLead,
    push_event,
    push_lead,
)
from serve.auth import Integration
from serve.deps import Store
from serve.errors import ApiError, error_responses
from serve.schemas import LeadEvent, LeadId, LeadStored, LeadUpsert

ERRORS = error_responses(400, 401, 403, 404, 409, 413, 422)

router = APIRouter(prefix="/v1/leads", tags=["funnel events"], responses=ERRORS)


def _stored(pushed: PushedLead) -> LeadStored:
    return LeadStored(
        lead_id=pushed.lead_id, created=pushed.created, outcome=pushed.outcome, stage=pushed.stage
    )


def _as_api_error(error: FunnelcastInputError) -> ApiError:
    if isinstance(error, LeadNotFoundError):
        return ApiError(404, "lead_not_found", str(error))
    if isinstance(error, DataContractError):
        return ApiError(422, "invalid_lead", str(error))
    if isinstance(error, EmptyStoreError):
        return ApiError(409, "store_empty", str(error))
    return ApiError(422, "invalid_lead", str(error))


@router.put(
    "/{lead_id}",
    response_model=LeadStored,
    summary="Create or replace a lead (fields and attributes)",
)
async def put_lead(
    lead_id: LeadId, lead: LeadUpsert, caller: Integration, store: Store
) -> LeadStored:
    fields = lead.model_dump(exclude={"attributes"})
    try:
        pushed = await run_in_threadpool(push_lead, store, lead_id, fields, lead.attributes)
    except FunnelcastInputError as error:
        raise _as_api_error(error) from None
    return _stored(pushed)


@router.post(
    "/{lead_id}/events",
    response_model=LeadStored,
    summary="Record a stage change or a won / lost close of a lead",
)
async def post_event(
    lead_id: LeadId, event: LeadEvent, caller: Integration, store: Store
) -> LeadStored:
    try:
        pushed = await run_in_threadpool(
            push_event, store, lead_id, event.kind, event.at, event.stage, event.amount
        )
    except FunnelcastInputError as error:
        raise _as_api_error(error) from None
    return _stored(pushed)
