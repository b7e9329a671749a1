"""Configuration: the node's configuration schema, and the desired configuration of a group of
nodes (a node's own overrides are in fleet.api.devices)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from fleet.api.deps import OPERATOR, ReaderDep, SessionDep, audited
from fleet.audit import AuditEntry
from fleet.config_profiles import config_view, set_group_config
from fleet.config_schema import leaves, schema_document
from fleet.schemas import ConfigBody, ConfigOut, ConfigSetting, ConfigView, Name

router = APIRouter(tags=["devices"])


@router.put("/groups/{group}/config", response_model=ConfigOut)
def put_group_config(group: Name, body: ConfigBody, audit: Annotated[AuditEntry, audited(
                         "config.set", "group:{group}", OPERATOR)],
                     session: SessionDep) -> ConfigOut:
    """Set the desired configuration of a group; its nodes receive it at their next check-in.

    The document is checked against the node's configuration schema: a 422 names each refused
    key (`loc`) and its rule (`msg`), e.g. `dimming.dim_level: must be an integer 0–100 (%),
    got 500`, also where a node's override would break a rule between two keys over it."""
    audit.detail["keys"] = sorted(leaves(body.config))
    row = set_group_config(session, group, body.config)
    return ConfigOut(scope="group", target=group, version=row.version, config=row.body)


@router.get("/groups/{group}/config", response_model=ConfigView)
def get_group_config(group: Name, _: ReaderDep, session: SessionDep) -> ConfigView:
    """A group's stored configuration and the desired configuration it gives its nodes
    (defaults < group, merged deeply), each key with its source. A group with nothing stored
    answers version 0 and the defaults."""
    return ConfigView.model_validate(config_view(session, "group", group))


@router.get("/config/schema", response_model=list[ConfigSetting])
def get_config_schema(_: ReaderDep) -> list[ConfigSetting]:
    """Every key of a node's configuration: its type, range, unit, default and meaning. A
    document given to PUT …/config is checked against it, as the node checks it."""
    return [ConfigSetting.model_validate(entry) for entry in schema_document()]
