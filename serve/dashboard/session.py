"""Who is signed in to the dashboard, and the checks every form post passes.

- The session cookie holds an opaque random token, never the key: HttpOnly, SameSite=Strict,
  Path=/dashboard, Secure when the request came over https. The store maps the token's hash to
  the key's identity with an expiry (`scoring.dashboard_sessions`), so every worker sees it and
  a revoked key ends its sessions.
- Form posts carry the session's CSRF token in a hidden field, compared in constant time; the
  sign-in form, which has no session yet, carries a token that must equal the one in a short-
  lived cookie set with the form (double submit). Posts from another origin are refused on
  their `Origin` / `Sec-Fetch-Site` headers before that.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from fastapi import Request, Response
from fastapi.concurrency import run_in_threadpool

from scoring.dashboard_sessions import SESSION_LIFETIME, DashboardSession, find_session
from scoring.store import FunnelStore

SESSION_COOKIE = "funnelcast_session"
SIGN_IN_COOKIE = "funnelcast_sign_in"
COOKIE_PATH = "/dashboard"
SIGN_IN_SECONDS = 30 * 60
MAX_FORM_FIELDS = 32


@dataclass(frozen=True)
class FormPost:
    """A url-encoded form's fields (the last value of a repeated field wins)."""

    fields: dict[str, str]

    def get(self, name: str) -> str:
        return self.fields.get(name, "")


async def read_form(request: Request) -> FormPost:
    """The fields of an `application/x-www-form-urlencoded` post; empty for any other body.

    The body is already bounded by the app's body limit; parsing needs no extra dependency.
    """
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        return FormPost({})
    body = await request.body()
    try:
        pairs = parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS
        )
    except (UnicodeDecodeError, ValueError):
        return FormPost({})
    return FormPost({name: value.replace("\x00", "") for name, value in pairs})


def same_origin(request: Request) -> bool:
    """Whether a post comes from a page of this site (browsers send these headers on posts)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    parts = urlsplit(origin)
    return parts.scheme == request.url.scheme and parts.netloc == request.headers.get("host")


def tokens_match(expected: str, given: str) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(expected, given)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        path=COOKIE_PATH,
        secure=_secure(request),
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(
        name, path=COOKIE_PATH, secure=_secure(request), httponly=True, samesite="strict"
    )


def new_sign_in_token() -> str:
    return secrets.token_urlsafe(24)


def set_sign_in_cookie(response: Response, request: Request, token: str) -> None:
    """The sign-in form's token, also in a short-lived cookie (double submit)."""
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        max_age=SIGN_IN_SECONDS,
        path=COOKIE_PATH,
        secure=_secure(request),
        httponly=True,
        samesite="strict",
    )


async def current_session(request: Request) -> DashboardSession | None:
    """The live session of the request's cookie, or None (no cookie, expired, revoked key)."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token:
        return None
    store: FunnelStore = request.app.state.store
    return await run_in_threadpool(find_session, store.engine, token)
