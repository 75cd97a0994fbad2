"""What a request brings in: its bearer token, its JSON body (bounded while it is read), and the JSON going out.

The size bound is checked chunk by chunk as the body arrives, so a client that
sends more than ``max_request_bytes`` (with or without a Content-Length, or
lying in it) is answered 413 without the server holding the rest in memory.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from soulprint.models.access import Principal
from soulprint.services.http.errors import BodyTooLarge, BadRequest, Unauthorized

M = TypeVar("M", bound=BaseModel)


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (the scheme in any case), else None."""
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def authenticate(request: Request, auth) -> Principal:
    """The request's principal, from its bearer token; every route module authenticates through here
    (401 without a token or with an unknown or revoked one)."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("an Authorization: Bearer <token> header is required")
    principal = await auth.authenticate(token)
    if principal is None:
        raise Unauthorized("the token is unknown or revoked", 'Bearer error="invalid_token"')
    return principal


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the request body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"the request body is larger than {limit} bytes")
    return bytes(body)


async def read_model(request: Request, model: type[M], limit: int) -> M:
    """The JSON body as ``model``: BadRequest (400) if it is not JSON, ValidationError (422) if it does not fit."""
    raw = await read_body(request, limit)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("the request body is not valid JSON" if raw.strip() else "the request body is empty") \
            from None
    return model.model_validate(data)


class JSON(Response):
    """orjson: datetimes and UUIDs as ISO strings and text, in one pass."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
