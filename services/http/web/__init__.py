"""The person's web app (issue 11), served by `soulprint serve`: sign in at /, the app under /app.

Pages and their session rules are in ``pages.py``; the templates and the
static scripts and styles are files of this package (no build step, nothing
fetched at run time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

from soulprint.services.http.web.pages import WebApp

if TYPE_CHECKING:
    from soulprint.services.http.context import ApiContext


def routes(ctx: "ApiContext") -> list[BaseRoute]:
    """The web app's routes; none without the query service (the upload service alone has no pages)."""
    return WebApp(ctx).routes() if ctx.query is not None else []
