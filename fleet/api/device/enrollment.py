"""Enrollment: a factory-imaged node redeems its one-time code for its identity."""

from __future__ import annotations

from fastapi import APIRouter, Request

from fleet.api.deps import SessionDep
from fleet.auth import sign_replies_with
from fleet.errors import DomainError
from fleet.registry import admit_enrollment, count_refused_enrollment, redeem_enrollment
from fleet.schemas import DeviceCredentials, EnrollRequest

router = APIRouter(tags=["device"])


@router.post("/enroll", response_model=DeviceCredentials,
             responses={403: {"description": "the code's node is decommissioned"},
                        404: {"description": "unknown code"},
                        409: {"description": "code used (and its grace period over)"},
                        410: {"description": "code expired"},
                        429: {"description": "too many attempts on the code, or refusals for "
                                              "the address"}})
def enroll(body: EnrollRequest, request: Request, session: SessionDep) -> DeviceCredentials:
    """A factory-imaged node exchanges its one-time enrollment code for its identity.

    The reply is signed with the code (X-Reply-Signature over the request's X-Nonce), which
    only the node and the server know. A node whose reply was lost redeems the same code again
    within an hour and gets a fresh identity, as long as it never used the first.
    """
    sign_replies_with(request, body.code.encode())
    address = request.client.host if request.client else "?"
    admit_enrollment(session, body.code, address)
    try:
        return redeem_enrollment(session, body.code)
    except DomainError:
        session.rollback()
        count_refused_enrollment(session, address)
        raise
