"""NUL characters out of every text the parser emits, counted.

JSON may carry ``\\u0000`` inside a string (a raw NUL byte is invalid JSON,
refused by both parsers), but Postgres ``text`` cannot hold it: one such
character in one message would fail a whole import. The converters strip it
from message texts, ids, titles and profile hints, checking ``"\\x00" in s``
first (a C scan) so that clean text, nearly all of it, costs no copy.
"""

from __future__ import annotations

NUL = "\x00"


class NulStripper:
    """``clean(value)``: ``value`` without NUL characters; ``count`` is how many were removed."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0

    def clean(self, value):
        """A str without its NUL characters; anything else unchanged."""
        if value.__class__ is str and NUL in value:
            stripped = value.replace(NUL, "")
            self.count += len(value) - len(stripped)
            return stripped
        return value
