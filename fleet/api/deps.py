"""Route dependencies as Annotated aliases: the session, the caller by role, the device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from fleet.auth import Caller, DeviceIdentity, authenticated_device, caller_with_role
from fleet.core.db import get_session

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

    return dependency


# Who may call a route, by the role of the caller's API token.
OperatorDep = Annotated[Caller, Depends(require_role("operator"))]
TechnicianDep = Annotated[Caller, Depends(require_role("operator", "technician"))]
ReaderDep = Annotated[Caller, Depends(require_role("operator", "technician", "reader"))]
DataReaderDep = Annotated[Caller, Depends(require_role("operator", "reader"))]
