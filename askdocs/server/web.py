"""The web page at ``/``, the API docs at ``/docs`` and their static files, served by askdocs itself (no CDN).

FastAPI's own ``/docs`` loads Swagger UI from a CDN, so offline it is a blank page; here the same
page loads the vendored ``swagger-ui-dist`` 5.35.0 files (``web/swagger/``, Apache-2.0, licence beside
them).  Version 5 renders OpenAPI 3.1, which FastAPI emits; the ``swagger-ui-bundle`` PyPI package
still ships Swagger UI 4, which refuses 3.1 documents.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
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


@router.get("/docs", include_in_schema=False)
async def api_docs(request: Request) -> Response:
    return get_swagger_ui_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} API",
        swagger_js_url="/static/swagger/swagger-ui-bundle.js",
        swagger_css_url="/static/swagger/swagger-ui.css",
        swagger_favicon_url="/static/swagger/favicon-32x32.png",
    )


def mount_static(app: FastAPI) -> None:
    """``/static``: a mount is the app's, not a router's, so the app asks for it here."""
    if WEB.is_dir():
        app.mount("/static", StaticFiles(directory=WEB), name="static")
