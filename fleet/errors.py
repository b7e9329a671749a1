"""Domain errors: why the server refuses a request, raised by services and mapped to HTTP once.

Services and routers raise these instead of HTTP exceptions; the app registers one handler
(fleet.app) that answers each with its status code (`http_status`, the one mapping) and
`{"detail": <the error's detail>}`.
Authentication (fleet.auth, a dependency rather than a service) keeps FastAPI's HTTPException
for its 401s and 403s: those are about the request's credentials, and a 401 may carry the
X-Server-Time header.
"""

from __future__ import annotations

from typing import Any


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
