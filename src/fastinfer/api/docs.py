"""Interactive docs that work with no internet: Swagger UI and ReDoc assets are served locally."""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, RedirectResponse, Response

from fastinfer.api.routes import DOCS, requires

ASSETS_URL = "/_assets/docs"
_ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"

router = APIRouter(include_in_schema=False, dependencies=[requires(DOCS)])
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)
# Only this server's own assets run; the page's one inline script is allowed by its hash.
# Swagger UI and ReDoc set inline styles from their scripts, so styles need 'unsafe-inline'
# (styles cannot run code); ReDoc's search runs in a blob: worker, images may be data: URLs.
_CSP = (
    "default-src 'none'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


# ReDoc's bundle shows a "powered by" logo fetched from its CDN: the one request the docs would make
# beyond this server (refused by the CSP, an error in the console). Served with an empty image.
_REDOC_JS = "redoc.standalone.js"
_REDOC_CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_EMPTY_IMAGE = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"


def _secured(page: HTMLResponse) -> HTMLResponse:
    """The docs page with a strict Content-Security-Policy and anti-framing headers."""
    hashes = "".join(
        f" 'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(bytes(page.body))
    )
    page.headers["Content-Security-Policy"] = _CSP.format(hashes=hashes)
    page.headers.update(_SECURITY_HEADERS)
    return page


@router.get("/")
async def root(request: Request) -> RedirectResponse:
    return RedirectResponse(f"{request.scope.get('root_path', '')}/docs")


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return _secured(
        get_swagger_ui_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title=f"{request.app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"tryItOutEnabled": True, "displayRequestDuration": True},
        )
    )


@cache
def _patched_redoc_bundle() -> bytes:
    return (_ASSETS_DIR / _REDOC_JS).read_bytes().replace(_REDOC_CDN_LOGO, _EMPTY_IMAGE)


@router.get(f"{ASSETS_URL}/{_REDOC_JS}")
async def redoc_bundle() -> Response:
    """ReDoc's script, its CDN logo replaced (read and patched once, then kept)."""
    return Response(
        _patched_redoc_bundle(),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=3600", **_SECURITY_HEADERS},
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return _secured(
        get_redoc_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title=f"{request.app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
    )


def install_docs(app: FastAPI) -> None:
    app.include_router(router)  # first: its patched ReDoc bundle wins over the static file
    app.mount(ASSETS_URL, StaticFiles(directory=_ASSETS_DIR), name="docs-assets")
