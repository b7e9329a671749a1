"""Groups: the desired configuration of a group of nodes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from fleet.api.deps import OPERATOR, SessionDep, audited
from fleet.audit import AuditEntry
from fleet.config_profiles import set_group_config
from fleet.schemas import ConfigBody, ConfigOut, Name

router = APIRouter(tags=["devices"])


@router.put("/groups/{group}/config", response_model=ConfigOut)
def put_group_config(group: Name, body: ConfigBody, audit: Annotated[AuditEntry, audited(
                         "config.set", "group:{group}", OPERATOR)],
                     session: SessionDep) -> ConfigOut:
    """Set the desired configuration of a group; its nodes receive it at their next check-in."""
    audit.detail["keys"] = sorted(body.config)
    row = set_group_config(session, group, body.config)
    return ConfigOut(scope="group", target=group, version=row.version, config=row.body)
