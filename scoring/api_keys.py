"""API keys: roles, creating and revoking keys, and the in-memory key ring the API checks.

A key is `fck_` plus 43 url-safe characters (256 random bits). The store keeps only its SHA-256
and a short prefix to recognise it in lists; the plaintext is shown once, when it is created.
Roles nest `viewer` ⊂ `manager` ⊂ `admin`; `integration` is separate (DESIGN §1).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from scoring import store_schema as schema
from scoring.errors import FunnelcastInputError

logger = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("viewer", "manager", "admin", "integration")
_NESTED = ("viewer", "manager", "admin")  # each role allows those before it
KEY_PREFIX = "fck_"
# "fck_" plus 8 random characters: enough to tell keys apart in a list, 48 of 256 bits shown.
PREFIX_LENGTH = 12
MAX_NAME_LENGTH = 64


def role_allows(held: str, needed: str) -> bool:
    """Whether a key with role `held` may do what needs role `needed`."""
    if held in _NESTED and needed in _NESTED:
        return _NESTED.index(held) >= _NESTED.index(needed)
    return held == needed and held in ROLES


def hash_key(key: str) -> str:
    """The SHA-256 hex digest the store keeps instead of the key."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Caller:
    """Who an API request comes from: the key's name and role (never the key)."""

    name: str
    role: str


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A key as `keys list` shows it; times are UTC."""

    name: str
    role: str
    prefix: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)  # the store keeps naive UTC


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    return moment.replace(tzinfo=dt.UTC) if moment is not None else None


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise FunnelcastInputError(
            f"unknown role {role!r}; choose one of {', '.join(ROLES)} "
            "(viewer ⊂ manager ⊂ admin; integration is separate)"
        )


def _check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise FunnelcastInputError("a key needs a name, e.g. --name crm-sync")
    if len(name) > MAX_NAME_LENGTH:
        raise FunnelcastInputError(f"key name is {len(name)} characters; at most {MAX_NAME_LENGTH}")
    if name.startswith(KEY_PREFIX):
        raise FunnelcastInputError(f"key names may not start with {KEY_PREFIX!r} (keys do)")
    return name


def create_key(engine: sa.Engine, role: str, name: str) -> str:
    """Store a new key and return its plaintext: the only time anyone sees it."""
    _check_role(role)
    name = _check_name(name)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = {
        "name": name,
        "role": role,
        "key_hash": hash_key(key),
        "prefix": key[:PREFIX_LENGTH],
        "created_at": _now(),
    }
    try:
        with engine.begin() as connection:
            connection.execute(schema.api_keys.insert().values(**row))
    except sa.exc.IntegrityError:  # the name is taken (a 256-bit hash does not collide)
        raise FunnelcastInputError(_name_taken(engine, name)) from None
    return key


def _name_taken(engine: sa.Engine, name: str) -> str:
    with engine.connect() as connection:
        revoked_at = connection.execute(
            sa.select(schema.api_keys.c.revoked_at).where(schema.api_keys.c.name == name)
        ).scalar()
    revoked = " (revoked; names are not reused)" if revoked_at is not None else ""
    return f"a key named {name!r} already exists{revoked}; choose another name"


def list_keys(engine: sa.Engine) -> list[KeyInfo]:
    """Every key, revoked ones included, oldest first; never a key or its hash."""
    table = schema.api_keys
    query = sa.select(
        table.c.name, table.c.role, table.c.prefix, table.c.created_at, table.c.revoked_at
    ).order_by(table.c.created_at, table.c.id)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [
        KeyInfo(
            name=r.name,
            role=r.role,
            prefix=r.prefix,
            created_at=r.created_at.replace(tzinfo=dt.UTC),
            revoked_at=_aware(r.revoked_at),
        )
        for r in rows
    ]


def revoke_key(engine: sa.Engine, name_or_prefix: str) -> KeyInfo:
    """Revoke the key with this name, this prefix (as `keys list` shows it) or this plaintext.

    A running API stops accepting it within its key ring's refresh interval.
    """
    wanted = name_or_prefix.strip()
    table = schema.api_keys
    if wanted.startswith(KEY_PREFIX) and len(wanted) > PREFIX_LENGTH:
        match = table.c.key_hash == hash_key(wanted)  # a pasted (leaked) key
    else:
        match = sa.or_(table.c.name == wanted, table.c.prefix == wanted)
    with engine.begin() as connection:
        rows = connection.execute(
            sa.select(table.c.id, table.c.name, table.c.revoked_at).where(match)
        ).all()
        active = [r for r in rows if r.revoked_at is None]
        if not rows:
            raise FunnelcastInputError(
                f"no key matches {wanted!r}; `funnelcast keys list` shows names and prefixes"
            )
        if not active:
            raise FunnelcastInputError(f"key {rows[0].name!r} is already revoked")
        if len(active) > 1:
            names = ", ".join(repr(r.name) for r in active)
            raise FunnelcastInputError(
                f"{wanted!r} matches several keys ({names}); revoke by name instead"
            )
        connection.execute(
            table.update().where(table.c.id == active[0].id).values(revoked_at=_now())
        )
    return next(k for k in list_keys(engine) if k.name == active[0].name)


class KeyRing:
    """Checks API keys against an in-memory copy of the active keys.

    A check is one SHA-256 and one dict lookup. The copy is reloaded from the store when it is
    older than `refresh_seconds`, on a hit or a miss alike, so a key created by the CLI starts
    working and a revoked one stops working in every worker within that interval; the store is
    read at most once per interval however many unknown keys arrive.
    """

    def __init__(
        self,
        engine: sa.Engine,
        refresh_seconds: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._callers: dict[str, tuple[str, Caller]] = {}
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyRing({len(self._callers)} active keys, refresh {self._refresh_seconds}s)"

    def refresh_due(self) -> bool:
        """Whether the next check would read the store (lets async callers do it off-loop)."""
        loaded_at = self._loaded_at
        return loaded_at is None or self._clock() - loaded_at >= self._refresh_seconds

    def refresh(self, *, force: bool = False) -> None:
        """Reload the active keys if the copy is stale (or `force`); one reader at a time."""
        with self._lock:
            if not force and not self.refresh_due():
                return  # another thread reloaded while this one waited
            first_load = self._loaded_at is None
            try:
                self._callers = self._load()
            except sa.exc.SQLAlchemyError:
                if first_load:
                    raise
                # Keep answering with the keys we know rather than failing every request;
                # try again next interval.
                logger.warning("could not reload API keys; still using the previous set")
            self._loaded_at = self._clock()

    def match(self, token: str) -> Caller | None:
        """The caller for this key from the in-memory copy, without touching the store."""
        digest = hash_key(token)
        found = self._callers.get(digest)
        if found is None:
            return None
        stored, caller = found
        # The dict matched by equality already; the constant-time compare is belt and braces.
        return caller if hmac.compare_digest(stored, digest) else None

    def authenticate(self, token: str) -> Caller | None:
        """The caller a key belongs to, or None for an unknown or revoked key."""
        if not token:
            return None
        if self.refresh_due():
            self.refresh()
        return self.match(token)

    def _load(self) -> dict[str, tuple[str, Caller]]:
        table = schema.api_keys
        query = sa.select(table.c.key_hash, table.c.name, table.c.role).where(
            table.c.revoked_at.is_(None)
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return {r.key_hash: (r.key_hash, Caller(name=r.name, role=r.role)) for r in rows}
