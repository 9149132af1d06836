"""Dashboard sign-in sessions in the funnel store (table `dashboard_sessions`).

A browser signs in once with an API key and then holds only an opaque random token in a
cookie. The store keeps the token's SHA-256 (a copy of the database holds no live session),
the key it stands for, a per-session CSRF token and an expiry. Every look-up joins the key, so a
revoked key ends its sessions in every worker at once, and the role is always the key's.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

import sqlalchemy as sa

from scoring import store_schema as schema
from scoring.api_keys import hash_key

SESSION_LIFETIME = dt.timedelta(hours=8)


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    """An active key as a session refers to it: its row id, name and role (never the key)."""

    key_id: int
    name: str
    role: str


@dataclass(frozen=True, slots=True)
class DashboardSession:
    """A live session: whose key, its role, the token its forms must echo, and its end (UTC)."""

    key_name: str
    role: str
    csrf_token: str
    expires_at: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)  # the store keeps naive UTC


def find_key(engine: sa.Engine, key: str) -> KeyIdentity | None:
    """The active key with this plaintext, or None (unknown or revoked)."""
    if not key:
        return None
    table = schema.api_keys
    query = sa.select(table.c.id, table.c.name, table.c.role).where(
        table.c.key_hash == hash_key(key), table.c.revoked_at.is_(None)
    )
    with engine.connect() as connection:
        row = connection.execute(query).first()
    return None if row is None else KeyIdentity(int(row.id), row.name, row.role)


def start_session(
    engine: sa.Engine, key: KeyIdentity, lifetime: dt.timedelta = SESSION_LIFETIME
) -> tuple[str, DashboardSession]:
    """A new session for `key`: the token for the cookie (shown only here) and the session.

    Sessions that have expired are removed on the way (sign-ins are rare; the table stays small).
    """
    token = secrets.token_urlsafe(32)
    csrf_token = secrets.token_urlsafe(32)
    now = _now()
    expires_at = now + lifetime
    table = schema.dashboard_sessions
    with engine.begin() as connection:
        connection.execute(table.delete().where(table.c.expires_at <= now))
        connection.execute(
            table.insert().values(
                token_hash=hash_key(token),
                key_id=key.key_id,
                csrf_token=csrf_token,
                created_at=now,
                expires_at=expires_at,
            )
        )
    session = DashboardSession(key.name, key.role, csrf_token, expires_at.replace(tzinfo=dt.UTC))
    return token, session


def find_session(engine: sa.Engine, token: str) -> DashboardSession | None:
    """The live session of a cookie's token: None when unknown, expired or its key is revoked."""
    if not token:
        return None
    sessions, keys = schema.dashboard_sessions, schema.api_keys
    query = (
        sa.select(keys.c.name, keys.c.role, sessions.c.csrf_token, sessions.c.expires_at)
        .join(keys, keys.c.id == sessions.c.key_id)
        .where(
            sessions.c.token_hash == hash_key(token),
            sessions.c.expires_at > _now(),
            keys.c.revoked_at.is_(None),
        )
    )
    with engine.connect() as connection:
        row = connection.execute(query).first()
    if row is None:
        return None
    return DashboardSession(
        row.name, row.role, row.csrf_token, row.expires_at.replace(tzinfo=dt.UTC)
    )


def end_session(engine: sa.Engine, token: str) -> None:
    """Sign out: the token no longer opens anything (a no-op for an unknown token)."""
    table = schema.dashboard_sessions
    with engine.begin() as connection:
        connection.execute(table.delete().where(table.c.token_hash == hash_key(token)))
