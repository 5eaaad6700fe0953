"""``/docs``: Swagger UI served from the service itself, so it works without the internet.

The assets come from the ``swagger-ui-py`` package's copy of the Swagger UI distribution; the
page carries a Content-Security-Policy that allows nothing from another origin.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files

from fastapi import Depends, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from ipmg_shared.guards import public

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
ASSETS_DIR = str(files("swagger_ui") / "static")
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def install_offline_docs(app: FastAPI) -> None:
    """Serve Swagger UI at ``/docs`` for ``app`` (created with ``docs_url=None``)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="swagger-ui-assets")

    @app.get(DOCS_PATH, include_in_schema=False, dependencies=[Depends(public())])
    async def docs() -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            oauth2_redirect_url=f"{DOCS_PATH}/oauth2-redirect",
            # Swagger UI would otherwise send the document to an online validator.
            swagger_ui_parameters={"validatorUrl": None},
        )
        html = bytes(page.body).decode()
        page.headers["Content-Security-Policy"] = _policy(html)
        page.headers["X-Content-Type-Options"] = "nosniff"
        page.headers["Referrer-Policy"] = "no-referrer"
        return page

    @app.get(
        f"{DOCS_PATH}/oauth2-redirect", include_in_schema=False, dependencies=[Depends(public())]
    )
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


def _policy(html: str) -> str:
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    )
