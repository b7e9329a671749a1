"""The FastAPI app: its routers, the handler mapping domain errors to HTTP, the schema check."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from fleet.api import dashboard
from fleet.api.body_limit import BodyLimit
from fleet.api.device.checkin import checkin
from fleet.api.device.reply_signing import SignedReplies
from fleet.api.main import api_router, device_router
from fleet.api.openapi import documented_openapi
from fleet.checkin_quick import QuickCheckin
from fleet.core.db import check_migrated, get_engine
from fleet.core.logs import setup_logging
from fleet.core.settings import get_settings
from fleet.errors import DomainError, TooMany, error_body, http_status

log = logging.getLogger("fleet")


def create_app(check_schema: bool = True) -> FastAPI:
    """Build the app; with `check_schema`, refuse to start on a database that is not migrated."""
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_json)
    settings.master_key_bytes()  # fails fast in production mode without a master key
    if check_schema:
        check_migrated(get_engine())
    app = FastAPI(
        lifespan=_lifespan,
        # No OpenTelemetry here: skip FastAPI's per-request check for configured providers.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        title="Lamplighter fleet server",
        version="0.1.0",
        description="Provisioning, device check-in, telemetry, releases and rollouts for "
                    "smart lampposts. Device endpoints (/device/v1) take an HMAC signature; "
                    "operator and data endpoints (/api/v1) take a bearer API token.",
    )
    url = settings.resolved_database_url
    app.state.quick_checkin = QuickCheckin(
        url, settings.master_key_bytes(), settings.checkin_interval_s, settings.clock_skew_s,
    ) if url.startswith("postgresql") else None
    # The check-in is served by a plain Starlette route placed first, which skips FastAPI's
    # dependency solving; the same handler stays registered on the API router, which is what
    # documents it in OpenAPI. Errors still go through FastAPI's handlers (same 4xx bodies).
    app.router.routes.insert(0, Route("/device/v1/checkin", checkin, methods=["POST"],
                                      include_in_schema=False))
    app.include_router(device_router)
    app.include_router(api_router)
    app.include_router(dashboard.router)
    app.add_middleware(SignedReplies)
    app.add_middleware(BodyLimit, max_body=settings.max_body_bytes,  # outermost: first to see
                       max_upload=settings.max_bundle_bytes)
    # Every refusal answers with the one error body (fleet.errors.ErrorBody).
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(DataError, _refused_by_database)
    app.add_exception_handler(OverflowError, _refused_by_database)
    app.add_exception_handler(Exception, _server_error)
    app.openapi = lambda: documented_openapi(app)  # type: ignore[method-assign]
    if not settings.master_key:
        log.warning("no LAMPLIGHTER_MASTER_KEY set: device secrets use the development key")
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    if app.state.quick_checkin is not None:
        await app.state.quick_checkin.close()


def _error(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_body(status, detail), headers=headers)


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    """A refusal raised by a service: its status code and the error body."""
    assert isinstance(exc, DomainError)
    status = http_status(exc)
    headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, TooMany) else None
    return _error(status, exc.detail, headers)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    """An HTTPException (authentication's 401 and 403, an unknown path, a wrong method)."""
    assert isinstance(exc, StarletteHTTPException)
    return _error(exc.status_code, exc.detail, dict(exc.headers) if exc.headers else None)


def _readable(value: bytes) -> str:
    return value.decode("utf-8", "replace")


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    """A request that fails validation: one entry per problem, its `loc` naming the field (a
    body that is not JSON is a 422 too, its input shown as text)."""
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(exc.errors(), custom_encoder={bytes: _readable})
    return _error(422, errors)


async def _refused_by_database(_: Request, exc: Exception) -> JSONResponse:
    """A value the database cannot store (a NUL byte, a huge number) is a client error."""
    reason = str(getattr(exc, "orig", exc)).splitlines()[0]
    return _error(422, f"value refused by the database: {reason}")


async def _server_error(_: Request, exc: Exception) -> JSONResponse:
    """A bug: the error body, no detail of the exception (it is logged)."""
    return _error(500, "internal server error")
