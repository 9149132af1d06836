"""API-key authentication: `Authorization: Bearer <key>`, checked against the app's key ring.

Routes declare the role they need with the aliases below (`caller: Manager`); the app's lifespan
puts a `scoring.api_keys.KeyRing` on `app.state.keyring`. Error messages never echo the key.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from scoring.api_keys import ROLES, Caller, KeyRing, role_allows
from serve.errors import ApiError

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="An API key from `funnelcast keys create`, sent as `Authorization: Bearer <key>`.",
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers=_CHALLENGE)


def require_role(role: str) -> Callable[..., Coroutine[Any, Any, Caller]]:
    """A dependency that admits keys whose role allows `role` and returns their caller."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {ROLES}")

    async def caller_with_role(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        if credentials is None:
            raise _unauthorized("send an API key as `Authorization: Bearer <key>`")
        keyring: KeyRing = request.app.state.keyring
        if keyring.refresh_due():
            # Reading the store blocks; keep it off the event loop (at most once an interval).
            await run_in_threadpool(keyring.refresh)
        caller = keyring.match(credentials.credentials)
        if caller is None:
            raise _unauthorized("the API key is unknown or revoked")
        if not role_allows(caller.role, role):
            raise ApiError(
                403,
                "forbidden",
                f"this endpoint needs role {role}; key {caller.name!r} has role {caller.role}",
            )
        request.state.caller = caller
        return caller

    return caller_with_role


Viewer = Annotated[Caller, Depends(require_role("viewer"))]
Manager = Annotated[Caller, Depends(require_role("manager"))]
Admin = Annotated[Caller, Depends(require_role("admin"))]
Integration = Annotated[Caller, Depends(require_role("integration"))]
