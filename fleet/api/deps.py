"""Route dependencies as Annotated aliases: the session, the caller by role, the device, and
the audited operator action."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from sqlalchemy.exc import DataError
from sqlmodel import Session

from fleet.audit import AuditEntry, Created, refusal_text
from fleet.auth import (
    Caller,
    DeviceIdentity,
    authenticated_device,
    caller_with_role,
    role_refusal,
    token_caller,
)
from fleet.core.db import get_session
from fleet.errors import DomainError, http_status

SessionDep = Annotated[Session, Depends(get_session)]


async def request_body(request: Request) -> bytes:
    """The raw body, read on the event loop (Starlette caches it for the route)."""
    return await request.body()


def current_device(request: Request, body: Annotated[bytes, Depends(request_body)],
                   session: SessionDep) -> DeviceIdentity:
    """The node that signed the request (a plain function: its database work runs in the pool)."""
    return authenticated_device(request, body, session)


DeviceDep = Annotated[DeviceIdentity, Depends(current_device)]


def require_role(*roles: str) -> Callable[..., Caller]:
    """A dependency: the caller's API token must carry one of `roles`."""

    def dependency(request: Request, session: SessionDep) -> Caller:
        return caller_with_role(request, session, roles)

    dependency.roles = roles  # type: ignore[attr-defined]  # documented (fleet.api.openapi)
    return dependency


# Who may call a route, by the role of the caller's API token.
OperatorDep = Annotated[Caller, Depends(require_role("operator"))]
TechnicianDep = Annotated[Caller, Depends(require_role("operator", "technician"))]
ReaderDep = Annotated[Caller, Depends(require_role("operator", "technician", "reader"))]
DataReaderDep = Annotated[Caller, Depends(require_role("operator", "reader"))]


OPERATOR = ("operator",)
TECHNICIAN = ("operator", "technician")


def audited(action: str, target: str, roles: tuple[str, ...],
            created: Created | None = None) -> Any:
    """A dependency for a route that changes state: the caller's token must carry one of
    `roles`, and the action is recorded in the audit trail with the token's name as actor.

    `action` and `target` are formatted with the route's path parameters ("device:{device_id}");
    with `created`, the target names what the action creates instead (one record per row).
    Done: an "ok" record in the action's own transaction (or alone, when it changed nothing).
    Refused after authentication (a wrong role, a domain error, a 4xx, a value the database
    refuses): a "refused" record with the status and reason, in a transaction of its own. A
    request with no valid token (401) is not recorded: there is no actor to name.
    """

    def dependency(request: Request, session: SessionDep) -> Iterator[AuditEntry]:
        caller = token_caller(request, session)
        params = request.path_params
        entry = AuditEntry(session, actor=caller.name, action=action.format_map(params),
                           target=target.format_map(params), token_id=caller.token_id,
                           created=created)
        refusal = role_refusal(caller, roles)
        if refusal is not None:
            entry.refused(refusal_text(refusal.detail), refusal.status_code)
            raise refusal
        entry.arm()
        try:
            yield entry
        except DomainError as exc:
            entry.refused(refusal_text(exc.detail), http_status(exc))
            raise
        except HTTPException as exc:
            if 400 <= exc.status_code < 500:
                entry.refused(refusal_text(exc.detail), exc.status_code)
            raise
        except RequestValidationError as exc:
            entry.refused(refusal_text(exc.errors()), 422)
            raise
        except (DataError, OverflowError) as exc:
            reason = str(getattr(exc, "orig", exc)).splitlines()[0]
            entry.refused(f"value refused by the database: {reason}", 422)
            raise
        else:
            entry.done()
        finally:
            entry.disarm()

    dependency.roles = roles  # type: ignore[attr-defined]  # documented (fleet.api.openapi)
    return Depends(dependency, scope="function")


def refuse_unknown_query(request: Request, known: frozenset[str] | None = None) -> None:
    """422 naming each query parameter the route does not declare (a typo such as ?limt=10 is
    refused, never silently ignored). `known`: the declared names, else read from the route.

    Only compared, never rewritten: a device signs its request over path?query as sent.
    """
    if known is None:
        route = request.scope.get("route")
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            return
        known = _declared_query(dependant)
    unknown = [name for name in dict.fromkeys(request.query_params.keys()) if name not in known]
    if unknown:
        raise RequestValidationError([
            {"type": "extra_forbidden", "loc": ("query", name), "msg": "unknown query parameter",
             "input": request.query_params.get(name)} for name in unknown])


# id(dependant) -> (dependant, its query names); the entry keeps the dependant alive, so its id
# is never reused by another route's.
_QUERY_NAMES: dict[int, tuple[Any, frozenset[str]]] = {}


def _declared_query(dependant: Any) -> frozenset[str]:
    """The query parameter names a route declares, its dependencies' included (cached)."""
    cached = _QUERY_NAMES.get(id(dependant))
    if cached is not None and cached[0] is dependant:
        return cached[1]
    found: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        pending.extend(current.dependencies)
        for param in current.query_params:
            model = param.field_info.annotation
            if isinstance(model, type) and issubclass(model, BaseModel):  # a query model
                found.update(f.alias or n for n, f in model.model_fields.items())
            else:
                found.add(param.alias)
    names = frozenset(found)
    _QUERY_NAMES[id(dependant)] = (dependant, names)
    return names


async def no_unknown_query(request: Request) -> None:
    """The router dependency of every API route (fleet.api.main): see refuse_unknown_query.
    Async: a few set lookups, on the event loop rather than a thread-pool hop per request."""
    refuse_unknown_query(request)

