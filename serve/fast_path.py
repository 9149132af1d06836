"""A short way through the app for well-formed score and rank requests.

`POST /v1/leads/score` and `/rank` carry nearly all of a CRM integration's traffic, and for a
one-lead request FastAPI's own machinery (routing, dependency resolution, request objects,
exception middleware) cost about as much as scoring the lead. This plain ASGI middleware
answers a request itself when everything about it is plainly right, with the same pieces the
routes use (`serve.auth.bearer_key` and `authorize`, the request schemas,
`serve.lead_scoring.scored`), so the answer is byte for byte the route's:

- the method and path are exactly those of the two routes, with no query string;
- the body is declared JSON (`Content-Type: application/json`) with a `Content-Length` within
  the app's body limit;
- the key ring needs no refresh (judged once the body is in), and the bearer key is known and
  allowed to score;
- the body parses as JSON and validates against the route's schema, a lead-conversion model is
  loaded, and every attribute has a type its model takes.

Anything else, from a bad key to a malformed body, goes on to the app with the body replayed, and
FastAPI answers it (or scores it, for a stale key ring or a chunked upload) exactly as it would
without this middleware. Nothing is scored, recorded or counted before that decision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from scoring.api_keys import KeyRing
from serve.asgi import replay
from serve.auth import authorize, bearer_key
from serve.errors import ApiError
from serve.lead_scoring import check_attributes, scored
from serve.schemas import RankRequest, ScoreRequest
from serve.service import ScoringService

_ROUTES: dict[str, type[ScoreRequest]] = {
    "/v1/leads/score": ScoreRequest,
    "/v1/leads/rank": RankRequest,
}


class ScoreFastPath:
    """Answers plainly well-formed score and rank requests without FastAPI's routing (see the
    module docstring); everything else goes on to `app` unchanged."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] not in _ROUTES
            or scope["query_string"]
        ):
            await self.app(scope, receive, send)
            return
        schema = _ROUTES[scope["path"]]
        length, authorization = self._plain_headers(scope)
        api = scope["app"]
        keyring: KeyRing = api.state.keyring
        if length is None or authorization is None:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = await _read_body(receive, messages)
        service: ScoringService = api.state.service
        scorer = service.loaded.scorer
        request: ScoreRequest | None = None
        ignored: list[str] = []
        # The key ring's freshness is judged once the body is in, as the route does: a slow
        # upload must not outlive a revocation.
        fresh = not keyring.refresh_due()
        if body is not None and len(body) == length and fresh and scorer is not None:
            try:
                authorize(keyring, bearer_key(authorization), "integration")
                request = schema.model_validate(json.loads(body))
                ignored = check_attributes(scorer, request.leads)
            except (ApiError, ValueError, RecursionError):  # ValueError: JSON and pydantic's
                request = None
        if request is None or scorer is None:
            await self.app(scope, replay(messages, receive), send)
            return
        scope["route"] = _Answered(scope["path"])
        content = await scored(scorer, api.state.recorder, request, ignored)
        await Response(content, media_type="application/json")(scope, receive, send)

    def _plain_headers(self, scope: Scope) -> tuple[int | None, str | None]:
        """The declared body length (None unless present, numeric and within the limit) and
        the `Authorization` value (None when absent), or (None, None) unless the body is
        declared JSON."""
        length: int | None = None
        authorization: str | None = None
        json_body = False
        seen: set[bytes] = set()
        for name, value in scope["headers"]:
            if name in seen:  # a repeated header: Starlette reads the first one
                continue
            seen.add(name)
            if name == b"content-length":
                length = int(value) if value.isdigit() and int(value) <= self.max_bytes else None
            elif name == b"content-type":
                media_type = value.split(b";", 1)[0].strip().lower()
                json_body = media_type == b"application/json"
            elif name == b"authorization":
                authorization = value.decode("latin-1")
        if not json_body:
            return None, None
        return length, authorization


@dataclass(frozen=True)
class _Answered:
    """What `scope["route"]` holds for a request answered here: the route template, which is
    what `serve.metrics.MetricsMiddleware` labels requests with (the paths have no
    parameters, so the template is the path)."""

    path: str


async def _read_body(receive: Receive, messages: list[Message]) -> bytes | None:
    """The whole request body (None if the client went away), keeping every message read in
    `messages` for a replay."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
