"""A node's credentials: key rotation over the air, retiring a key now, enrollment codes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from fleet.api.deps import TECHNICIAN, SessionDep, audited
from fleet.audit import AuditEntry
from fleet.registry import issue_enrollment, retire_key, rotate_key
from fleet.schemas import DeviceCredentials, KeyRotation

router = APIRouter(tags=["devices"])


@router.post("/devices/{device_id}/rotate-key", response_model=KeyRotation, status_code=202,
             responses={404: {"description": "no such device"},
                        409: {"description": "decommissioned, or a rotation already pending"}})
def rotate(device_id: str, audit: Annotated[AuditEntry, audited(
               "device_key.rotate", "device:{device_id}", TECHNICIAN)],
           session: SessionDep) -> KeyRotation:
    """Rotate the node's key over the air: the next key goes to the node in its next check-in
    reply, hidden under the current key; both are accepted until the node signs with the next,
    then only the next. No visit needed."""
    return rotate_key(session, device_id, audit.actor)


@router.post("/devices/{device_id}/retire-key", response_model=DeviceCredentials,
             responses={404: {"description": "no such device"},
                        409: {"description": "decommissioned"}})
def retire(device_id: str, audit: Annotated[AuditEntry, audited(
               "device_key.retire", "device:{device_id}", TECHNICIAN)],
           session: SessionDep) -> DeviceCredentials:
    """Retire the node's key now (a compromised node): a new secret is returned, the old one
    and any pending rotation are refused from this moment, and the node needs a technician to
    provision the new secret."""
    return retire_key(session, device_id, audit.actor)


@router.post("/devices/{device_id}/enrollment", status_code=201,
             responses={404: {"description": "no such device"}, 409: {"description": "retired"}})
def new_enrollment(device_id: str, audit: Annotated[AuditEntry, audited(
                       "enrollment.issue", "device:{device_id}", TECHNICIAN)],
                   session: SessionDep,
                   ttl_days: Annotated[int, Query(ge=1, le=365)] = 30) -> dict[str, str]:
    """A one-time code the node's factory image redeems on first boot."""
    audit.detail["ttl_days"] = ttl_days
    return {"device_id": device_id,
            "enrollment_code": issue_enrollment(session, device_id, ttl_days, audit.actor)}
