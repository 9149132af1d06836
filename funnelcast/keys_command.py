"""`funnelcast keys`: create, list and revoke the API keys the scoring API accepts."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from funnelcast.cli_support import err, friendly_errors, load_settings, open_store, out
from scoring.api_keys import ROLES, create_key, list_keys, revoke_key

keys_app = typer.Typer(
    help="API keys for the scoring API: create, list, revoke.",
    no_args_is_help=True,
)


def _when(moment: dt.datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else ""


@keys_app.command("create")
@friendly_errors
def create(
    role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)}.")],
    name: Annotated[str, typer.Option(help="A name to recognise and revoke the key by.")],
) -> None:
    """Create a key and print it (alone, on stdout). It is not shown again."""
    store = open_store(load_settings())
    try:
        key = create_key(store.engine, role, name)
    finally:
        store.close()
    typer.echo(key)  # plain echo: nothing may wrap or colour what programs capture
    err.print(
        f"created {role} key {name.strip()!r}; store it now, it is not shown again",
        highlight=False,
        markup=False,
    )


@keys_app.command("list")
@friendly_errors
def list_command() -> None:
    """List keys by name, role and prefix (never the keys themselves)."""
    store = open_store(load_settings())
    try:
        keys = list_keys(store.engine)
    finally:
        store.close()
    if not keys:
        err.print("no API keys yet; create one with `funnelcast keys create`", markup=False)
        return
    table = Table(title="API keys", header_style="bold")
    for column in ("name", "role", "prefix", "created", "revoked"):
        table.add_column(column)
    for key in keys:
        cells = (key.name, key.role, key.prefix, _when(key.created_at), _when(key.revoked_at))
        table.add_row(*(Text(cell) for cell in cells))  # a name is text, not rich markup
    out.print(table)


@keys_app.command("revoke")
@friendly_errors
def revoke(
    key: Annotated[str, typer.Argument(help="The key's name or prefix (as `keys list` shows).")],
) -> None:
    """Revoke a key; a running API refuses it within seconds."""
    store = open_store(load_settings())
    try:
        revoked = revoke_key(store.engine, key)
    finally:
        store.close()
    out.print(f"revoked {revoked.role} key {revoked.name!r}", highlight=False, markup=False)
