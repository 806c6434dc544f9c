"""The API's docs pages (Swagger UI at ``/docs``, ReDoc at ``/redoc``) served from this server alone.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on an offline host they are blank. The scripts,
styles and icon come from the ``fastapi-offline`` package (a pinned, maintained copy of the same Swagger UI 5
and ReDoc 2 bundles) and are served under ``/docs-assets``; the pages reference nothing outside this server.
The routes are plain Starlette routes, like FastAPI's own docs routes: a browser cannot send the API token, so
the docs stay readable without it (they describe the API; every call still needs the token).
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

ASSETS_URL = "/docs-assets"
SWAGGER_JS, SWAGGER_CSS, REDOC_JS, FAVICON = "swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", \
    "favicon.png"


def docs_assets_folder() -> str:
    """The folder of the bundled Swagger UI / ReDoc files inside the installed fastapi-offline package."""
    return str(files("fastapi_offline") / "static")


def add_offline_docs(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve ``docs_url`` and ``redoc_url`` for ``app`` (built with ``docs_url=None, redoc_url=None``), with
    every asset from this server. URLs are built from the request's root path, so they hold under a mount."""
    app.mount(ASSETS_URL, StaticFiles(directory=docs_assets_folder()), name="docs-assets")
    redirect_url = app.swagger_ui_oauth2_redirect_url

    def local(request: Request, path: str) -> str:
        return request.scope.get("root_path", "").rstrip("/") + path

    async def swagger(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=local(request, app.openapi_url), title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=local(request, redirect_url) if redirect_url else None,
            swagger_js_url=local(request, f"{ASSETS_URL}/{SWAGGER_JS}"),
            swagger_css_url=local(request, f"{ASSETS_URL}/{SWAGGER_CSS}"),
            swagger_favicon_url=local(request, f"{ASSETS_URL}/{FAVICON}"),
            swagger_ui_parameters=app.swagger_ui_parameters)

    async def redoc(request: Request) -> HTMLResponse:
        return get_redoc_html(openapi_url=local(request, app.openapi_url), title=f"{app.title} - ReDoc",
                              redoc_js_url=local(request, f"{ASSETS_URL}/{REDOC_JS}"),
                              redoc_favicon_url=local(request, f"{ASSETS_URL}/{FAVICON}"), with_google_fonts=False)

    async def oauth2_redirect(request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_route(docs_url, swagger, include_in_schema=False)
    app.add_route(redoc_url, redoc, include_in_schema=False)
    if redirect_url:
        app.add_route(redirect_url, oauth2_redirect, include_in_schema=False)
