"""Lone UTF-16 surrogates out of the JSON that ijson parses, replaced and counted.

JSON may spell a character as a surrogate pair of escapes (``\\ud83d\\ude00``),
and nothing stops an export from holding half of one (``\\ud800`` alone).
That is not a character: orjson refuses it (the framer then hands the stream
to ijson), and yajl mangles it: a lone high surrogate becomes "?", one
followed by another escape is merged with it into a wrong character, a lone
low surrogate comes out as bytes that are not UTF-8 and fail the import.

So the bytes are fixed before yajl sees them: every escape of a lone
surrogate becomes ``\\ufffd`` (U+FFFD, the replacement character), six bytes
for six, so offsets and byte counts stay as they were. Only where ijson
parses (the framer's orjson path refuses these strings and hands off), and at
regex speed: the search skips to escapes of ``\\ud``/``\\uD`` only.

An escape counts when an even number of backslashes precedes it (``\\\\ud800``
is the text ``\\ud800``, not an escape). Known limit: its partner is judged by
its bytes alone, so a lone low surrogate right after the *text*
``\\ud83d`` (``\\\\ud83d\\udc00``) is taken for the second half of a pair and
left to yajl, which refuses it as invalid UTF-8.
"""

from __future__ import annotations

import re

REPLACEMENT = b"\\ufffd"
_HEX2 = rb"[0-9a-fA-F]{2}"


def _lone(d: bytes) -> re.Pattern:
    # A literal prefix (\ud or \uD) lets the regex engine skip every other escape.
    return re.compile(
        rb"\\u" + d + rb"(?:[89abAB]" + _HEX2 + rb"(?!\\u[dD][c-fC-F])"  # a high one with no low after it
        rb"|(?<!\\u[dD][89abAB]" + _HEX2 + rb"\\u" + d + rb")[c-fC-F]" + _HEX2 + rb")"  # a low one with no high before it
    )


_LONE = (_lone(b"d"), _lone(b"D"))
_WINDOW = 10  # a high surrogate's escape and the start of its partner's: the tail held back
_CONTEXT = 8  # the bytes before a low surrogate's escape that say whether it has a partner


class SurrogateScrubber:
    """``feed(data)`` -> (the same bytes with lone surrogate escapes replaced, how many).

    Streaming: the last few bytes of a chunk may be half an escape, so they
    are held back until the next ``feed`` (or ``feed(b"", final=True)``).
    """

    __slots__ = ("_held", "_context", "_slashes")

    def __init__(self) -> None:
        self._held = b""
        self._context = b""  # the last bytes handed on
        self._slashes = 0  # backslashes ending what was handed on

    def feed(self, data: bytes, final: bool = False) -> tuple[bytes, int]:
        buf = self._held + data if self._held else data
        cut = len(buf)
        if not final:
            held_from = buf.find(b"\\", max(0, cut - _WINDOW))
            if held_from >= 0:
                cut = held_from
        self._held = buf[cut:]
        out, replaced = self._replace(buf, cut)
        self._hand_on(out)
        return out, replaced

    def _replace(self, buf: bytes, cut: int) -> tuple[bytes, int]:
        ctx = self._context
        text = ctx + buf
        start, stop = len(ctx), len(ctx) + cut
        hits = [m.start() for pattern in _LONE for m in pattern.finditer(text)
                if start <= m.start() < stop and self._escapes(text, m.start(), start)]
        if not hits:
            return buf[:cut], 0
        out = bytearray(buf[:cut])
        for at in hits:
            out[at - start:at - start + 6] = REPLACEMENT
        return bytes(out), len(hits)

    def _escapes(self, text: bytes, at: int, start: int) -> bool:
        """Whether the backslash at ``at`` starts an escape (an even run of backslashes before it)."""
        i = at
        while i > 0 and text[i - 1] == 0x5C:  # "\\"; runs before different hits never overlap
            i -= 1
        run = at - i
        if i == 0:  # the run reaches back past the context, into what was handed on
            run = at - start + self._slashes
        return run % 2 == 0

    def _hand_on(self, out: bytes) -> None:
        if not out:
            return
        trailing = len(out) - len(out.rstrip(b"\\"))
        self._slashes = self._slashes + trailing if trailing == len(out) else trailing
        self._context = (self._context + out)[-_CONTEXT:]
