"""`/docs` (Swagger UI) and `/redoc` (ReDoc) that work offline: their scripts and styles come from an installed
package (`fastapi-offline`'s bundled Swagger UI 5 and ReDoc), served under `/docs/static`, never from a CDN.

`swagger-ui-bundle` was the first candidate, but its newest release ships Swagger UI 4.15, which refuses
OpenAPI 3.1 (what FastAPI writes) with "does not specify a valid version field"; Swagger UI 5 renders it.
The pages carry a Content-Security-Policy that allows this origin only, so a browser fetches nothing from
elsewhere even where a bundle links out (ReDoc's logo). The pages and assets are ops routes: behind the API
key when keys are on, unless `open_ops`.
"""

from __future__ import annotations

import importlib.resources
import logging

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

log = logging.getLogger("redtrans.serve")

DOCS = "/docs"
REDOC = "/redoc"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
STATIC = "/docs/static"
OFFLINE_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)
"""The docs pages may load nothing from elsewhere (ReDoc's "powered by" logo would come from its CDN)."""
_HIDE_REMOTE_LOGO = "<style>img[src^='https://cdn.redoc.ly']{display:none}</style></head>"


def _offline(page: HTMLResponse, head_extra: str = "") -> HTMLResponse:
    body = bytes(page.body).decode()
    if head_extra:
        body = body.replace("</head>", head_extra, 1)
    return HTMLResponse(body, headers={"Content-Security-Policy": OFFLINE_CSP})


def install_docs(app: FastAPI, openapi_url: str = "/openapi.json") -> None:
    """Add `/docs`, `/docs/oauth2-redirect`, `/redoc` and the `/docs/static` mount to `app` (created with
    `docs_url=None, redoc_url=None`)."""
    try:
        assets = importlib.resources.files("fastapi_offline") / "static"
    except ModuleNotFoundError:
        log.warning("fastapi-offline is not installed: /docs and /redoc load Swagger UI and ReDoc from a CDN")
        assets = None
    title = app.title
    if assets is not None:
        app.mount(STATIC, StaticFiles(directory=str(assets)), name="docs-static")

    @app.get(DOCS, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        if assets is None:
            return get_swagger_ui_html(
                openapi_url=openapi_url, title=f"{title} - Swagger UI", oauth2_redirect_url=OAUTH2_REDIRECT
            )
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=OAUTH2_REDIRECT,
            swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC}/favicon.png",
        )
        return _offline(page)

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC, include_in_schema=False)
    async def redoc() -> HTMLResponse:
        if assets is None:
            return get_redoc_html(openapi_url=openapi_url, title=f"{title} - ReDoc")
        page = get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{STATIC}/redoc.standalone.js",
            redoc_favicon_url=f"{STATIC}/favicon.png",
            with_google_fonts=False,
        )
        return _offline(page, _HIDE_REMOTE_LOGO)
