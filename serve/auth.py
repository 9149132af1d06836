"""API-key authentication: `Authorization: Bearer <key>`, checked against the app's key ring.

Routes declare the role they need with the aliases below (`caller: Manager`); the app's lifespan
puts a `scoring.api_keys.KeyRing` on `app.state.keyring`. Error messages never echo the key.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase

from scoring.api_keys import ROLES, Caller, KeyRing, role_allows
from serve.errors import ApiError

_DESCRIPTION = "An API key from `funnelcast keys create`, sent as `Authorization: Bearer <key>`."
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers=_CHALLENGE)


class RoleKey(SecurityBase):
    """A dependency that admits keys whose role allows `role` and returns their caller.

    One dependency does the whole check (reading the header too), and OpenAPI shows it as the
    `ApiKey` bearer scheme: each dependency FastAPI resolves costs tens of microseconds, a fair
    part of a one-lead request.
    """

    def __init__(self, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; one of {ROLES}")
        self.role = role
        self.model = HTTPBearerModel(description=_DESCRIPTION)
        self.scheme_name = "ApiKey"

    async def __call__(self, request: Request) -> Caller:
        key = bearer_key(request.headers.get("authorization", ""))
        keyring: KeyRing = request.app.state.keyring
        if keyring.refresh_due():
            # Reading the store blocks; keep it off the event loop (at most once an interval).
            await run_in_threadpool(keyring.refresh)
        caller = authorize(keyring, key, self.role)
        request.state.caller = caller
        return caller


def bearer_key(authorization: str) -> str:
    """The key of an `Authorization: Bearer <key>` header value; 401 for anything else."""
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise _unauthorized("send an API key as `Authorization: Bearer <key>`")
    return key


def authorize(keyring: KeyRing, key: str, role: str) -> Caller:
    """The caller `key` belongs to, if its role allows `role`, from the key ring's in-memory
    copy (refresh that first when `refresh_due()`).

    Raises:
        ApiError: 401 for an unknown or revoked key, 403 for a key whose role does not allow
            `role`.
    """
    caller = keyring.match(key)
    if caller is None:
        raise _unauthorized("the API key is unknown or revoked")
    if not role_allows(caller.role, role):
        raise ApiError(
            403,
            "forbidden",
            f"this endpoint needs role {role}; key {caller.name!r} has role {caller.role}",
        )
    return caller


def require_role(role: str) -> RoleKey:
    """A dependency that admits keys whose role allows `role` and returns their caller."""
    return RoleKey(role)


Viewer = Annotated[Caller, Depends(require_role("viewer"))]
Manager = Annotated[Caller, Depends(require_role("manager"))]
Admin = Annotated[Caller, Depends(require_role("admin"))]
Integration = Annotated[Caller, Depends(require_role("integration"))]
