"""The API's one error shape, and the exception that produces it.

Every error response, whatever its cause (a bad key, a malformed body, a missing model), is
`{"error": {"code": ..., "message": ..., "details": [...]}}` with the status code of the problem.
Routes and dependencies raise `ApiError`; the app's exception handlers turn it (and FastAPI's
own validation and HTTP errors) into that shape.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    """One problem: where it is (a path into the request) and what is wrong."""

    model_config = ConfigDict(extra="forbid")

    location: list[str | int] = Field(
        default_factory=list, description="Path to the offending field, e.g. body/leads/3/lead_id"
    )
    message: str
    lead_id: str | None = Field(default=None, description="The lead concerned, when known")


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Machine-readable code, e.g. unauthorized, invalid_request")
    message: str = Field(description="What went wrong and how to fix it, for a person")
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    """The shape of every error the API returns."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorBody


class ApiError(Exception):
    """An error the API answers with `status` and the one error shape."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[ErrorDetail] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers

    def body(self) -> dict[str, Any]:
        body = ErrorResponse(
            error=ErrorBody(code=self.code, message=self.message, details=self.details)
        ).model_dump(exclude_none=True)
        encodable: dict[str, Any] = _encodable(body)
        return encodable


def _encodable(value: Any) -> Any:
    """`value` with every text UTF-8 can encode: an error may quote what a client sent, such
    as a lone surrogate escape ("\\ud800"), and the response must not fail on it."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_encodable(item) for item in value]
    if isinstance(value, dict):
        return {_encodable(key): _encodable(item) for key, item in value.items()}
    return value


_DESCRIPTIONS = {
    400: "Malformed JSON",
    401: "No API key, or an unknown or revoked one",
    403: "The key's role may not do this",
    404: "No such lead",
    409: "The store holds no data set yet",
    413: "Body over the size limit",
    422: "A field is missing, has the wrong type, or breaks the data contract",
    503: "No lead-conversion model is loaded yet",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses, all in the one error shape."""
    return {
        status: {"model": ErrorResponse, "description": _DESCRIPTIONS[status]}
        for status in statuses
    }
