"""Every error the API answers, as JSON with its status from one table.

The body is OpenAI's shape, ``{"error": {"type", "message"}}``, because the
chat endpoint's clients read ``error.message``; the REST endpoints use the same
so a client handles one shape. A route raises; the handlers registered by
``exception_handlers()`` turn the exception into its response. Nothing else
writes an error body, and no traceback ever reaches one: an unexpected
exception is answered as a plain 500 (and logged by the server).
"""

from __future__ import annotations

import orjson
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from soulprint.models.access import AccessDenied
from soulprint.models.query import NoSoulprint, Unavailable
from soulprint.services.logs import redact

class ApiError(Exception):
    """An error of the API itself (not of the query service): its message is for the client.

    ``headers`` go on the response (Retry-After, Location, the tus headers); ``extra`` is merged
    into the error object (a 409's running job, for one)."""

    def __init__(self, message: str, *, headers: dict[str, str] | None = None, extra: dict | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}
        self.extra = extra or {}


class NotFound(ApiError):
    """No such resource for this person (another person's is not found either, never forbidden)."""


class Conflict(ApiError):
    """The same export of the same person is already being imported (``extra`` names the job)."""


class Gone(ApiError):
    """A resumable upload that expired or was terminated."""


class PreconditionFailed(ApiError):
    """A protocol version the server does not speak (tus)."""


class UnsupportedMedia(ApiError):
    """Not a zip or JSON export by its first bytes, or a content type the route does not take."""


class RateLimited(ApiError):
    """Too many requests for this token; ``headers`` carry Retry-After."""


class BadRequest(ApiError):
    """Not JSON, or JSON no endpoint could answer (a chat without a user message)."""


class BodyTooLarge(ApiError):
    pass


class Unauthorized(ApiError):
    """No token, or one that is unknown or revoked."""

    def __init__(self, message: str, challenge: str = "Bearer") -> None:
        super().__init__(message, headers={"WWW-Authenticate": challenge})
        self.challenge = challenge


# The one table: exception -> status. The first class that matches wins.
STATUS: tuple[tuple[type[Exception], int], ...] = (
    (BadRequest, 400),
    (Unauthorized, 401),
    (AccessDenied, 403),
    (NoSoulprint, 404),
    (NotFound, 404),
    (Conflict, 409),
    (Gone, 410),
    (PreconditionFailed, 412),
    (BodyTooLarge, 413),
    (UnsupportedMedia, 415),
    (ValidationError, 422),
    (RateLimited, 429),
    (Unavailable, 503),
)

# OpenAI's error types where one exists, so its clients raise the matching exception class.
TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    412: "precondition_failed",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable",
}


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   extra: dict | None = None) -> Response:
    body = {"error": {"type": TYPES.get(status, "error"), "message": message, **(extra or {})}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def status_of(exc: Exception) -> int:
    return next((status for cls, status in STATUS if isinstance(exc, cls)), 500)


def message_of(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        # Where and what, never the input itself (it may be large, or someone's text).
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                         for e in exc.errors(include_url=False, include_input=False))
    return redact(" ".join(str(exc).split())) or type(exc).__name__  # a provider's error may quote a key


async def _handle(request: Request, exc: Exception) -> Response:
    status = status_of(exc)
    if status == 500:  # Starlette re-raises it after this answer: the server logs the traceback
        return error_response(500, "internal error")
    if isinstance(exc, ApiError):
        return error_response(status, message_of(exc), exc.headers or None, exc.extra)
    return error_response(status, message_of(exc))


async def _handle_http(request: Request, exc: HTTPException) -> Response:
    """Starlette's own: an unknown route (404), a method the route does not take (405)."""
    message = {404: f"no route {request.url.path}",
               405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, exc.detail)
    return error_response(exc.status_code, message, exc.headers)


def exception_handlers() -> dict:
    handlers: dict = {cls: _handle for cls, _ in STATUS}
    handlers[HTTPException] = _handle_http
    handlers[Exception] = _handle
    return handlers
