"""Commands: queue reboot, identify or lamp_override for a node, and list its commands."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from fleet.api.deps import OPERATOR, ReaderDep, SessionDep, audited
from fleet.audit import AuditEntry
from fleet.commands import command_state, get_command, queue_command, recent_commands
from fleet.models import Command, aware
from fleet.schemas import CommandIn, CommandOut, RowId

router = APIRouter(tags=["devices"])


def _command_out(cmd: Command, uid: str) -> CommandOut:
    return CommandOut(id=cmd.id or 0, device_id=uid, type=cmd.type, args=cmd.args,
                      state=command_state(cmd), created_at=aware(cmd.created_at),
                      expires_at=aware(cmd.expires_at), delivered_at=aware(cmd.delivered_at),
                      acked_at=aware(cmd.acked_at), ok=cmd.ok, reason=cmd.reason,
                      result=cmd.result)


@router.post("/devices/{device_id}/commands", response_model=CommandOut, status_code=201,
             responses={404: {"description": "no such device"}, 409: {"description": "retired"},
                        422: {"description": "bad arguments"}})
def send_command(device_id: str, body: CommandIn, audit: Annotated[AuditEntry, audited(
                     "command.send", "device:{device_id}", OPERATOR)],
                 session: SessionDep) -> CommandOut:
    """Queue a command (reboot, identify, lamp_override) for the node's next check-in."""
    audit.detail.update(type=body.type, args=body.args)
    if "expires_in_s" in body.model_fields_set:
        audit.detail["expires_in_s"] = body.expires_in_s
    return _command_out(queue_command(session, device_id, body.type, body.args,
                                      body.expires_in_s), device_id)


@router.get("/devices/{device_id}/commands", response_model=list[CommandOut],
            responses={404: {"description": "no such device"}})
def list_commands(device_id: str, _: ReaderDep, session: SessionDep) -> list[CommandOut]:
    """The node's commands, newest first, each with its state and the node's answer."""
    return [_command_out(c, device_id) for c in recent_commands(session, device_id)]


@router.get("/devices/{device_id}/commands/{command_id}", response_model=CommandOut,
            responses={404: {"description": "no such device, or no such command for it"}})
def show_command(device_id: str, command_id: RowId, _: ReaderDep,
                 session: SessionDep) -> CommandOut:
    """One command's life: queued, delivered, acked (ok or refused, reason, result), expired."""
    return _command_out(get_command(session, device_id, command_id), device_id)
