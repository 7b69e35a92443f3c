"""The web playground: static HTML, CSS and JavaScript served by the API, no build step.

The page is a plain client of the public /v1 API with the key the user types in, so it needs
no route of its own beyond its files.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

HERE = Path(__file__).parent


def install_playground(app: FastAPI) -> None:
    app.mount(
        "/playground/static", StaticFiles(directory=HERE / "static"), name="playground-static"
    )

    def page() -> FileResponse:
        # no-cache: an upgraded server's page must not run against a cached older script.
        return FileResponse(HERE / "index.html", headers={"Cache-Control": "no-cache"})

    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/playground", page, methods=["GET"], include_in_schema=False)
