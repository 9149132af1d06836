"""Small pieces of plain ASGI the app's own middleware share."""

from __future__ import annotations

from starlette.types import Message, Receive


def replay(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that gives `messages` again, in order, then whatever `receive` gives: for a
    middleware that read the request body and hands the request on."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
