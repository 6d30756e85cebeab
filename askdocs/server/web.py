"""The web page at ``/`` and its static files, served by askdocs itself (no build step, no CDN)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

WEB = Path(__file__).resolve().parent.parent / "web"

router = APIRouter()


@router.get("/", include_in_schema=False)
async def index_page() -> Response:
    page = WEB / "index.html"
    if not page.is_file():
        return Response("askdocs API: see /docs", media_type="text/plain")
    return FileResponse(page, headers={"Cache-Control": "no-cache"})


def mount_static(app: FastAPI) -> None:
    """``/static``: a mount is the app's, not a router's, so the app asks for it here."""
    if WEB.is_dir():
        app.mount("/static", StaticFiles(directory=WEB), name="static")
