"""The operator dashboard: one static page that reads the operator API with the user's token."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

router = APIRouter(include_in_schema=False)
PAGE = Path(__file__).resolve().parent.parent / "static" / "dashboard.html"


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/dashboard")


@router.get("/dashboard")
def dashboard() -> FileResponse:
    """Fleet summary, nodes with their state and faults, rollouts with pause/resume/abort."""
    return FileResponse(PAGE, media_type="text/html")
