"""The fleet as a whole: the dashboard's summary counts and the health check."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Response
from sqlalchemy import func, select

from fleet.api.deps import ReaderDep, SessionDep
from fleet.core.settings import get_settings
from fleet.models import Device, utcnow

router = APIRouter(tags=["devices"])


@router.get("/fleet/summary")
def fleet_summary(_: ReaderDep, session: SessionDep) -> dict[str, int]:
    """Counts for the dashboard: nodes registered, active, online, decommissioned."""
    cutoff = utcnow() - timedelta(seconds=get_settings().offline_after_s)
    total = session.execute(select(func.count(Device.id))).scalar_one()
    active = session.execute(select(func.count(Device.id))
                             .where(Device.status == "active")).scalar_one()
    online = session.execute(select(func.count(Device.id)).where(
        Device.status == "active", Device.last_seen >= cutoff)).scalar_one()
    return {"registered": total, "active": active, "online": online,
            "offline": active - online, "decommissioned": total - active}


@router.get("/healthz", include_in_schema=False)
def healthz() -> Response:
    """Plain "ok" while the process serves requests (for load balancers and `make run`)."""
    return Response("ok", media_type="text/plain")
