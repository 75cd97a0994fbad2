"""Anthropic SDK exceptions as one failed attempt (:class:`TransportError`).

Shared by the Messages client (anthropic_provider.py) and the Message Batches
engine (batch.py), which otherwise would import each other.
"""

from __future__ import annotations

import anthropic

from soulprint.models.text import one_line

from .base import ERROR_CHARS, TransportError
from .ratelimit import throttle_hint


def transport_error(exc: anthropic.APIError, timeout_s: float) -> TransportError:
    """An SDK exception as one failed attempt."""
    if isinstance(exc, anthropic.APITimeoutError):  # before APIConnectionError: it is a subclass
        return TransportError("timeout", f"timed out after {timeout_s:g}s", retryable=True)
    if isinstance(exc, anthropic.APIConnectionError):
        return TransportError("api", one_line(f"connection error: {exc}", ERROR_CHARS), retryable=True)
    if isinstance(exc, anthropic.APIStatusError):
        return _status_error(exc)
    # APIResponseValidationError: an answer the SDK could not read
    return TransportError("api", one_line(f"unexpected response: {exc}", ERROR_CHARS), retryable=True)


def _status_error(exc: anthropic.APIStatusError) -> TransportError:
    status = exc.status_code
    headers = exc.response.headers if exc.response is not None else None
    message = one_line(f"{status} {exc.type or ''}: {exc.api_message or exc.message}", ERROR_CHARS)
    if status == 429:
        return TransportError("rate_limited", message, retryable=True, retry_after=throttle_hint(headers), status=status)
    if status in (529, 503):
        return TransportError("overloaded", message, retryable=True, retry_after=throttle_hint(headers), status=status)
    if status in (408, 504):
        return TransportError("timeout", message, retryable=True, status=status)
    if status >= 500:
        return TransportError("api", message, retryable=True, status=status)
    # 400 (bad request), 401/403 (credentials), 404 (model), 413 (too large): retrying cannot help.
    return TransportError("api", message, retryable=False, status=status)
