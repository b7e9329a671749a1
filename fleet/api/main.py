"""The routers put together: /device/v1 for the nodes, /api/v1 for operators and data readers."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from fleet.api import (
    audit,
    commands,
    config_drift,
    device_keys,
    devices,
    fleet,
    groups,
    release_keys,
    releases,
    rollouts,
    telemetry,
)
from fleet.api.deps import no_unknown_query
from fleet.api.device import bundles, checkin, clock, enrollment
from fleet.api.device import telemetry as telemetry_ingest

# Every route refuses a query parameter it does not declare (a 422 that names it).
device_router = APIRouter(prefix="/device/v1", dependencies=[Depends(no_unknown_query)])
for module in (enrollment, checkin, clock, bundles, telemetry_ingest):
    device_router.include_router(module.router)

api_router = APIRouter(prefix="/api/v1", dependencies=[Depends(no_unknown_query)])
for module in (devices, device_keys, groups, config_drift, commands, fleet, release_keys,
               releases, rollouts, telemetry, audit):
    api_router.include_router(module.router)
