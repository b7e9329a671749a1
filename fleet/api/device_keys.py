"""A node's credentials: a new secret (key rotation) or a one-time enrollment code."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from fleet.api.deps import SessionDep, TechnicianDep
from fleet.registry import issue_enrollment, rotate_key
from fleet.schemas import DeviceCredentials

router = APIRouter(tags=["devices"])


@router.post("/devices/{device_id}/rotate-key", response_model=DeviceCredentials,
             responses={404: {"description": "no such device"}, 409: {"description": "retired"}})
def rotate(device_id: str, caller: TechnicianDep, session: SessionDep) -> DeviceCredentials:
    """Issue a new secret for the node; the old one is refused from now on."""
    return rotate_key(session, device_id, caller.name)


@router.post("/devices/{device_id}/enrollment", status_code=201,
             responses={404: {"description": "no such device"}, 409: {"description": "retired"}})
def new_enrollment(device_id: str, caller: TechnicianDep, session: SessionDep,
                   ttl_days: Annotated[int, Query(ge=1, le=365)] = 30) -> dict[str, str]:
    """A one-time code the node's factory image redeems on first boot."""
    return {"device_id": device_id,
            "enrollment_code": issue_enrollment(session, device_id, ttl_days, caller.name)}
