"""What a request brings in: its bearer token, its JSON body (bounded while it is read), and the JSON going out.

The size bound is checked chunk by chunk as the body arrives, so a client that
sends more than ``max_request_bytes`` (with or without a Content-Length, or
lying in it) is answered 413 without the server holding the rest in memory.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, TypeVar
from urllib.parse import urlsplit

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


# The web app's session (services/http/web): the person's token itself, in an HTTP-only, SameSite=Strict
# cookie. A browser sends a cookie with any request to us, even one a hostile page makes it send, so the
# cookie counts for the API only on a same-origin request that also proves it was made by our own pages:
# the header WEB_HEADER (a cross-origin page cannot set it without a CORS preflight, which we never grant)
# or, where no header can be set (EventSource, a link), the CSRF token derived from the cookie.
SESSION_COOKIE = "soulprint_session"
WEB_HEADER = "x-soulprint-web"


def csrf_token(session: str) -> str:
    """The CSRF token of a session: derived from the cookie's value, so a page that cannot read the cookie
    cannot compute it, and the server keeps no state for it."""
    return hmac.new(session.encode("utf-8"), b"soulprint-web-csrf", hashlib.sha256).hexdigest()[:40]


def same_origin(request: Request) -> bool:
    """The browser says the request came from our own origin (or says nothing, as non-browser clients).
    Sec-Fetch-Site first: no page can forge it, and it is there when Origin is "null"."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host", "")


def session_token(request: Request) -> str | None:
    """The session cookie's token, when the request may use it (see SESSION_COOKIE)."""
    session = request.cookies.get(SESSION_COOKIE)
    if not session or not same_origin(request):
        return None
    proof = request.headers.get("x-csrf-token") or request.query_params.get("csrf") or ""
    if request.headers.get(WEB_HEADER) == "1" or hmac.compare_digest(proof.encode(), csrf_token(session).encode()):
        return session
    return None


async def authenticate(request: Request, auth) -> Principal:
    """The request's principal, from its bearer token or the web app's session cookie (session_token);
    every route module authenticates through here (401 without a token or with an unknown or revoked one)."""
    token = bearer_token(request) or session_token(request)
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
