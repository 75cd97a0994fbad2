"""DELETE /v1/people/{user_id}: erase everything about a person, answered with the receipt (200).

A person's token may erase only its own person: another id is 404, as for
any other person's resource, so the answer never says whether that person
exists. The operator token may erase anyone. Erasing an id twice (or one
never seen) is not an error: the receipt says what was deleted, possibly nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from soulprint.models.query import Unavailable
from soulprint.services.erasure import FilesRemain
from soulprint.services.http.errors import NotFound
from soulprint.services.http.inputs import JSON, authenticate

if TYPE_CHECKING:
    from soulprint.services.http.context import ApiContext


def routes(ctx: "ApiContext") -> list[BaseRoute]:
    if ctx.erasure is None:
        return []

    async def delete_person(request: Request) -> Response:
        principal = await authenticate(request, ctx.auth)
        user_id = request.path_params["user_id"]
        if not principal.admin and principal.user_id != user_id:
            raise NotFound(f"no person {user_id}")
        try:
            return JSON(await ctx.erasure.delete_person(user_id))
        except FilesRemain as exc:
            raise Unavailable(str(exc)) from None

    return [Route("/v1/people/{user_id}", delete_person, methods=["DELETE"])]
