"""Domain errors: why the server refuses a request, raised by services and mapped to HTTP once.

Services and routers raise these instead of HTTP exceptions; the app registers one handler
(fleet.app) that answers each with its status code (`http_status`, the one mapping) and the
one error body every refusal of the API has (`error_body`, documented as `ErrorBody`):
`{"detail": <why>, "status": <the HTTP status>, "error": <its name, e.g. "not_found">}`.
Authentication (fleet.auth, a dependency rather than a service) keeps FastAPI's HTTPException
for its 401s and 403s: those are about the request's credentials, and a 401 may carry the
X-Server-Time header.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class DomainError(Exception):
    """A refused request; `detail` says why (a message, or a structured refusal)."""

    def __init__(self, detail: str | dict[str, Any]) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    """The thing the request names does not exist (HTTP 404)."""


class Forbidden(DomainError):
    """The subject may no longer do this, e.g. a decommissioned node (HTTP 403)."""


class Conflict(DomainError):
    """The current state does not allow it: taken, retired, already used, out of turn (HTTP 409)."""


class Gone(DomainError):
    """It existed but has expired, e.g. an enrollment code (HTTP 410)."""


class TooLarge(DomainError):
    """The request body is larger than the server accepts (HTTP 413)."""


class TooMany(DomainError):
    """Too many attempts in too short a time: try again later (HTTP 429, with Retry-After)."""

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class Invalid(DomainError):
    """A well-formed request whose content is refused: bad bundle, filter, plan (HTTP 422)."""


# The one place domain errors become HTTP status codes (the app's handler, the audit trail).
HTTP_STATUS: dict[type[DomainError], int] = {
    NotFound: 404, Forbidden: 403, Conflict: 409, Gone: 410, TooLarge: 413, Invalid: 422,
    TooMany: 429,
}


def http_status(exc: DomainError) -> int:
    """The HTTP status code that answers `exc` (400 for a DomainError of no listed kind)."""
    return next((HTTP_STATUS[cls] for cls in type(exc).__mro__ if cls in HTTP_STATUS), 400)


# The name of each error status, the `error` field of an error body (stable: clients branch on it).
ERROR_NAMES: dict[int, str] = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 410: "gone", 413: "too_large",
    416: "range_not_satisfiable", 422: "invalid", 429: "too_many", 500: "server_error",
}


class ErrorBody(BaseModel):
    """Every error the API answers (4xx, 5xx) has this body; `detail` says why."""

    detail: str | list[dict[str, Any]] | dict[str, Any] = Field(description=(
        "Why: a message; for a request that fails validation, one entry per problem "
        "({type, loc, msg, ...}, `loc` naming the field or parameter); for a refused telemetry "
        "batch, {error, index, seq, field}"))
    status: int = Field(description="The HTTP status code, repeated")
    error: str = Field(description="The status's name: " + ", ".join(
        f"{code} {name}" for code, name in ERROR_NAMES.items()))

    model_config = {"json_schema_extra": {"examples": [
        {"detail": "no such device: ll-3f9a0c21d4e5", "status": 404, "error": "not_found"},
        {"detail": [{"type": "extra_forbidden", "loc": ["query", "limt"],
                     "msg": "unknown query parameter", "input": "10"}],
         "status": 422, "error": "invalid"}]}}


def error_body(status: int, detail: Any) -> dict[str, Any]:
    """The body of an error reply: `detail`, the status and its name."""
    return {"detail": detail, "status": status, "error": ERROR_NAMES.get(status, "error")}
