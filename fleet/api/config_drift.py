"""Configuration drift: the nodes whose applied configuration stays behind their desired one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from fleet.api.deps import ReaderDep, SessionDep
from fleet.config_state import drifting_nodes
from fleet.schemas import DriftNodeOut, DriftPage, DriftQuery

router = APIRouter(tags=["devices"])


@router.get("/config/drift", response_model=DriftPage)
def list_drift(_: ReaderDep, session: SessionDep,
               q: Annotated[DriftQuery, Query()]) -> DriftPage:
    """Active nodes whose applied configuration has been below their desired one for more
    than two check-ins in a row, each with both versions, the version it refused and why (if
    it refused one) and its last check-in; by registration order, paged with `cursor`."""
    nodes, cursor = drifting_nodes(session, group=q.group, after=q.cursor, limit=q.limit)
    return DriftPage(nodes=[DriftNodeOut.model_validate(n) for n in nodes], next_cursor=cursor)
