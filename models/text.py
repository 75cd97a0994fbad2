"""Text helpers every layer shares (the bottom layer: imports nothing of ours)."""

from __future__ import annotations


def one_line(value: object, limit: int = 500) -> str:
    """``value`` (an exception, a model's answer, any text) as one line of at most ``limit`` characters.

    Whitespace runs, newlines included, become one space; an exception with no
    message is named by its class; a cut is marked with an ellipsis.
    """
    text = " ".join(str(value).split())
    if not text and isinstance(value, BaseException):
        text = type(value).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
