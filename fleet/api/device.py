"""Device-facing API: enrollment, check-in (and, in sibling modules, telemetry and downloads)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlmodel import Session

from fleet.auth import DeviceIdentity, authenticated_device
from fleet.checkin import handle_checkin
from fleet.db import get_session
from fleet.provisioning import redeem_enrollment
from fleet.schemas import CheckIn, CheckInReply, DeviceCredentials, EnrollRequest

router = APIRouter(prefix="/device/v1", tags=["device"])


@router.post("/enroll", response_model=DeviceCredentials,
             responses={404: {"description": "unknown code"}, 409: {"description": "code used"},
                        410: {"description": "code expired"}})
def enroll(body: EnrollRequest, session: Session = Depends(get_session)) -> DeviceCredentials:
    """A factory-imaged node exchanges its one-time enrollment code for its identity."""
    return redeem_enrollment(session, body.code)


@router.post("/checkin", response_model=CheckInReply,
             responses={401: {"description": "bad or missing device signature"},
                        403: {"description": "device decommissioned"}})
def checkin(body: CheckIn, ident: DeviceIdentity = Depends(authenticated_device),
            session: Session = Depends(get_session)) -> CheckInReply:
    """Report the node's state; the reply carries configuration, commands and the next interval."""
    return handle_checkin(session, ident.device, body)
