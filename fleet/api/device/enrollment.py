"""Enrollment: a factory-imaged node redeems its one-time code for its identity."""

from __future__ import annotations

from fastapi import APIRouter

from fleet.api.deps import SessionDep
from fleet.registry import redeem_enrollment
from fleet.schemas import DeviceCredentials, EnrollRequest

router = APIRouter(tags=["device"])


@router.post("/enroll", response_model=DeviceCredentials,
             responses={404: {"description": "unknown code"}, 409: {"description": "code used"},
                        410: {"description": "code expired"}})
def enroll(body: EnrollRequest, session: SessionDep) -> DeviceCredentials:
    """A factory-imaged node exchanges its one-time enrollment code for its identity."""
    return redeem_enrollment(session, body.code)
