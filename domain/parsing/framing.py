"""Lists of conversations cut into elements, each parsed by orjson on its own.

The list is the whole file, or the "conversations" member of a top-level
object (see _open_wrapped).

Why: building one conversation at a time keeps memory flat, and ijson's item
builder does that, but it builds a dotted prefix string for every key it
passes and so runs no faster than ``orjson.loads`` on the whole file (which
needs the whole file and five times its size in RAM). orjson on one element's
bytes does the same parse in a cache-sized working set: on a 300 MB export it
is about twice as fast as ``orjson.loads`` of the whole file. What it needs is
the byte range of each element, found here without tokenising in Python:

* The first element's end is found by letting orjson parse the buffer: it
  stops with "unexpected content after document" at the element's end (a
  *probe*, which parses that element twice, once).
* The bytes between the first two elements (``}`` ``,`` whitespace ``{`` and
  the first key, e.g. ``},{"title":``) become a literal *boundary* searched
  with ``bytes.find``. The ``"`` in it is unescaped and follows ``{``, so it
  opens a key: the match is structural, never inside a string.
* A match may still close a nested object whose first key is the same (a
  claude.ai message list inside a conversation, say). A running bracket
  balance since the element's start (``bytes.translate`` at C speed, blind to
  strings) filters those out; orjson then checks the candidate. JSON objects
  are prefix-free, so orjson accepting ``buf[start:candidate]`` proves the
  candidate is the element's end: a wrong cut cannot parse.
* Brackets inside strings can skew the balance. A cut that balances but
  falls inside the element fails to parse and the search goes on (twice at
  most); a cut past the end makes orjson stop at the real end, which is then
  taken. A true end skipped for good is found by a probe once the element
  runs past a size threshold (doubling). Beyond that, an element that is not
  an object, or a string orjson refuses (a lone surrogate, which yajl
  accepts), hands the rest of the stream to ijson, which is exact and linear:
  nothing here can be made quadratic by crafted input.
"""

from __future__ import annotations

import re
from typing import Iterator

import orjson

from . import backend
from .capped import CappedReader, nesting_exceeds, too_deep
from .errors import ExportError
from .jsonstream import READ_ERRORS, iter_items, translate_error

READ_SIZE = 1 << 18
_FIRST_PROBE = 1 << 16  # the first element: probe early, it is usually small
_PROBE = 1 << 20  # later elements: the boundary normally finds them first
_COMPACT_AT = 1 << 20  # drop consumed bytes once this many have piled up
_KEY_MAX = 64  # longest first key taken into the boundary
_MAX_SHORT_CUTS = 2  # balanced cuts inside one element before ijson takes over
_VALUE_MAX = 128  # longest first value (a title, a uuid) looked past for the second key
_NOT_WS = re.compile(rb"[^ \t\r\n]")  # JSON's four whitespace bytes
_PARENS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
# How a list of conversations ends: its last "}", "]", and in a wrapper the object's "}".
_LAST_TAIL = re.compile(rb"\}[ \t\r\n]*\][ \t\r\n]*(?:\}[ \t\r\n]*)?\Z")
_TAIL_MAX = 4096  # how far from the end of the file that ending is looked for
_CONVERSATIONS_MEMBER = re.compile(rb'"conversations"[ \t\r\n]*:[ \t\r\n]*\[')
_WRAPPED_SCAN = 1 << 20  # how far into a wrapper object the "conversations" member is looked for
ORJSON_MAX_DEPTH = 1024  # orjson refuses deeper documents, whatever our own limit


class _HandOff(Exception):
    """The rest of the stream goes to ijson, from buffer offset ``start``."""

    def __init__(self, start: int) -> None:
        self.start = start


class ArrayItems:
    """Iterate the elements of the top-level array in ``reader``.

    Calls ``reader.mark()`` after each element, as iter_items does, so the
    per-conversation byte cap counts one conversation at a time. Raises
    ExportError for bad input; never returns half an element.
    """

    def __init__(self, reader: CappedReader, wrapped: bool = False) -> None:
        self.reader = reader
        # wrapped: the list is the "conversations" member of a top-level object.
        self.wrapped = wrapped
        # Nesting is checked per element below (exactly per conversation, and
        # orjson itself stops at 1,024), so the reader's per-read guard is off.
        self.max_depth = reader.limits.max_nesting_depth
        reader.guard_depth = False
        self.buf = bytearray()
        self.eof = False
        self.boundary: bytes | None = None  # b'},{"title":' once learned
        # When item 2's first value is a plain string: the bytes between the
        # colon and its quote, and from its closing quote through the second
        # key (b',"name":'). A match followed by another second key closes a
        # nested object (a claude.ai message inside its conversation).
        self.value_gap = b""
        self.second_key: bytes | None = None
        # Search for the second key instead of the boundary when it is the
        # rarer of the two (claude.ai: b',"name":' once per conversation,
        # while b'},{"uuid":' also separates every message).
        self.by_second_key = False
        # Brackets are counted only when cuts keep falling inside elements.
        self.balanced = False
        self.elements = 0
        self.short_elements = 0
        self.handed_off = False

    # ------------------------------------------------------------------ reading
    def _fill(self) -> bool:
        if self.eof:
            return False
        data = self.reader.read(READ_SIZE)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _skip_ws(self, pos: int) -> int:
        """Index of the next non-whitespace byte at or after ``pos`` (reading on), or -1 at EOF."""
        while True:
            found = self._after_ws(pos)
            if found >= 0:
                return found
            pos = max(pos, len(self.buf))
            if not self._fill():
                return -1

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[object]:
        opened = self._open_wrapped() if self.wrapped else self._open_list()
        if opened < 0:  # not the shape the sniff saw: ijson explains, or copes
            yield from self._ijson_from(0, wrap=False)
            return
        pos = self._skip_ws(opened)
        if pos >= 0 and self.buf[pos] == 0x5D:  # "]": an empty list
            self._expect_end(pos + 1)
            return
        while True:
            if pos < 0:
                raise self._truncated()
            if pos > _COMPACT_AT:
                del self.buf[:pos]
                pos = 0
            if self.buf[pos] != 0x7B:  # "{": not a conversation object; ijson yields it and the reader objects
                yield from self._ijson_from(pos)
                return
            try:
                parsed = self._element(pos)
            except _HandOff as h:
                yield from self._ijson_from(h.start)
                return
            end = parsed.pop()
            if end > _COMPACT_AT:  # a large element: its bytes go before the caller gets its tree
                del self.buf[:end - 1]  # (the byte before ``end`` is read by _learn_boundary)
                end = 1
            # Popped, not bound to a local: this frame holds no reference to
            # the element while the caller works on it (and frees it).
            yield parsed.pop()
            self.reader.mark()
            pos = self._skip_ws(end)
            if pos < 0:
                raise self._truncated()
            sep = self.buf[pos]
            if sep == 0x5D:  # "]"
                self._expect_end(pos + 1)
                return
            if sep != 0x2C:  # ","
                raise self._invalid(f"expected ',' or ']' after item, found {chr(sep)!r}")
            start = self._skip_ws(pos + 1)
            if self.boundary is None and start >= 0:
                self._learn_boundary(end, start)
            pos = start

    def _element(self, start: int) -> list:
        """Parse the object starting at ``start``; returns [it, the offset just past it].

        Cuts at boundary matches are tried in order: a cut past the end is
        resolved by orjson (see _parse), a cut inside the element ("short")
        moves on. After a short cut the element's brackets are counted and
        only cuts where they balance are tried; a stream where that keeps
        happening counts from the start of every element.
        """
        self.elements += 1
        boundary = self.boundary
        probe_at = _PROBE if boundary is not None else _FIRST_PROBE
        search = start
        balanced = self.balanced
        balance, balanced_to = 0, start
        short_cuts = 0
        by_second = self.by_second_key
        anchor = self.second_key if by_second else boundary
        while True:
            buf = self.buf
            cut = buf.find(anchor, search) if anchor is not None else -1
            if cut >= 0:
                if by_second:
                    search = cut + 1
                    cut = self._boundary_before(start, cut)
                    if cut < 0:
                        continue
                else:
                    plausible = self._plausible(cut)
                    if plausible is None:  # too close to the end of the buffer to tell
                        self._fill()
                        continue
                    search = cut + 1
                    if not plausible:
                        continue
                end = cut + 1  # just past the "}"
                if balanced:  # counted in place: no copy of the segment
                    balance += (buf.count(b"{", balanced_to, end) + buf.count(b"[", balanced_to, end)
                                - buf.count(b"}", balanced_to, end) - buf.count(b"]", balanced_to, end))
                    balanced_to = end
                    if balance != 0:
                        continue
                found = self._parse(start, end)
                if found is not None:
                    return self._checked(start, found)
                short_cuts += 1
                if short_cuts == 1:
                    self.short_elements += 1
                    if self.short_elements * 8 > self.elements + 64:
                        self.balanced = True
                if not balanced:
                    balanced = True
                    continue
                if short_cuts > _MAX_SHORT_CUTS:
                    # Crafted input could make every boundary a balanced
                    # failed parse (quadratic): ijson takes over instead.
                    raise _HandOff(start)
                continue
            if self.eof or len(buf) - start >= probe_at:
                found = self._parse_last(start)
                if found is None:
                    found = self._parse(start, None)
                if found is not None:
                    return self._checked(start, found)
                if self.eof:
                    raise self._truncated()
                probe_at *= 2
            if anchor is not None:  # a match may straddle the old end of the buffer
                search = max(search, len(buf) - len(anchor) + 1)
            self._fill()

    def _plausible(self, cut: int) -> bool | None:
        """Whether the match at ``cut`` may start the next element (None: read more first).

        Rejects only a match whose first value is a plain string followed by a
        different second key than item 2 had; anything else is worth a try.
        """
        second = self.second_key
        if second is None:
            return True
        buf = self.buf
        value = cut + len(self.boundary) + len(self.value_gap)
        if value + _VALUE_MAX + len(second) + 2 > len(buf) and not self.eof:
            return None
        if not buf.startswith(self.value_gap, value - len(self.value_gap)):
            return True
        close = self._plain_string(value, _VALUE_MAX) if value < len(buf) else -1
        return close < 0 or buf.startswith(second, close + 1)

    def _boundary_before(self, start: int, key: int) -> int:
        """For a second key at ``key``: the offset of the boundary's "}" before its first value, or -1."""
        buf = self.buf
        close = key - 1
        if close <= start or buf[close] != 0x22:
            return -1
        value = buf.rfind(b'"', max(start, close - _VALUE_MAX - 1), close)
        if value < 0 or buf.find(b"\\", value, close) >= 0:
            return -1
        cut = value - len(self.value_gap) - len(self.boundary)
        if cut < start or not buf.startswith(self.boundary + self.value_gap, cut):
            return -1
        return cut

    def _checked(self, start: int, found: list) -> list:
        if self.max_depth < ORJSON_MAX_DEPTH:  # a limit stricter than orjson's own
            self._check_nesting(start, found[1])
        return found

    def _parse(self, start: int, stop: int | None) -> list | None:
        """orjson on ``buf[start:stop]`` (to the buffer's end for None).

        Returns [item, end] when the element ends within the slice: orjson
        stops at its end with "unexpected content after document", which
        gives the end, and the exact slice is parsed again. None when the
        element runs past the slice.
        """
        if stop is None and not self.eof:
            # A read may end inside a UTF-8 character, which orjson calls
            # invalid UTF-8 (not the end of data): probe up to the last whole one.
            stop = whole_chars(self.buf)
        try:
            return [self._loads(start, stop), len(self.buf) if stop is None else stop]
        except orjson.JSONDecodeError as e:
            if e.msg.startswith("unexpected end of data"):
                return None
            if not e.msg.startswith("unexpected content after document"):
                self._refuse(e)
                raise _HandOff(start) from None
            # e.pos counts characters of the decoded text (e.doc, a copy of
            # the whole slice: _parse_last avoids it for the last element), not bytes
            end = start + len(e.doc[:e.pos].encode("utf-8", "surrogatepass"))
        try:
            return [self._loads(start, end), end]
        except orjson.JSONDecodeError as e:
            self._refuse(e)
            raise _HandOff(start) from None

    def _parse_last(self, start: int) -> list | None:
        """The element as the last of the list, when the buffer ends as the list does (else None).

        The last element has no boundary after it: cut before the closing "]"
        (JSON objects are prefix-free, so a cut that parses is the end). This
        spares orjson's error text for the whole element (see _parse).
        """
        tail_at = max(start, len(self.buf) - _TAIL_MAX)
        m = _LAST_TAIL.search(self.buf, tail_at)
        if m is None:
            return None
        end = m.start() + 1  # just past the "}"
        try:
            return [self._loads(start, end), end]
        except orjson.JSONDecodeError:
            return None  # not the end after all: _parse finds it, or explains

    def _loads(self, start: int, stop: int | None):
        """orjson on a view of ``buf[start:stop]``: no copy of the element's bytes.

        Views are released before returning, so the buffer can grow again.
        """
        with memoryview(self.buf) as view, view[start:stop] as segment:
            return orjson.loads(segment)

    def _learn_boundary(self, end: int, next_start: int) -> None:
        """The bytes from the end of item 1 through item 2's first key become the boundary."""
        buf = self.buf
        while len(buf) - next_start < 2 * (_KEY_MAX + _VALUE_MAX) and self._fill():
            buf = self.buf
        if buf[next_start] != 0x7B:
            return
        colon = self._key(self._after_ws(next_start + 1))
        if colon < 0:  # an empty object, or an odd key: nothing to anchor on
            return
        self.boundary = bytes(buf[end - 1:colon + 1])
        # The second key, when the first value is a plain string.
        value = self._after_ws(colon + 1)
        close = self._plain_string(value, _VALUE_MAX)
        if close < 0:
            return
        comma = self._after_ws(close + 1)
        if comma < 0 or buf[comma] != 0x2C:  # ","
            return
        colon2 = self._key(self._after_ws(comma + 1))
        if colon2 < 0:
            return
        self.value_gap = bytes(buf[colon + 1:value])
        self.second_key = bytes(buf[close + 1:colon2 + 1])
        self.by_second_key = buf.count(self.second_key) < buf.count(self.boundary)

    def _plain_string(self, pos: int, longest: int) -> int:
        """For a string without escapes at ``pos``, at most ``longest`` bytes: its closing quote, else -1."""
        buf = self.buf
        if pos < 0 or buf[pos] != 0x22:  # '"'
            return -1
        close = buf.find(b'"', pos + 1, pos + 2 + longest)
        if close < 0 or buf.find(b"\\", pos, close) >= 0:
            return -1
        return close

    def _key(self, pos: int) -> int:
        """For a plain object key at ``pos``: the offset of its colon, else -1."""
        close = self._plain_string(pos, _KEY_MAX)
        colon = self._after_ws(close + 1) if close >= 0 else -1
        return colon if colon >= 0 and self.buf[colon] == 0x3A else -1  # ":"

    def _after_ws(self, pos: int) -> int:
        """Index of the next non-whitespace byte in the buffer at or after ``pos``, or -1."""
        m = _NOT_WS.search(self.buf, pos)
        return m.start() if m else -1

    def _open_list(self) -> int:
        """Offset just past the top-level "[", or -1."""
        pos = self._skip_ws(0)
        return pos + 1 if pos >= 0 and self.buf[pos] == 0x5B else -1

    def _open_wrapped(self) -> int:
        """Offset just past the "[" of the top-level object's "conversations" member, or -1.

        A match of ``"conversations": [`` is a real key (its quote follows no
        backslash and opens a string) but may belong to a nested object; it is
        the top-level member exactly when the members before it close into an
        object with one "}", which orjson checks. Searched within the first
        MiB; past that ijson parses the file.
        """
        start = self._skip_ws(0)
        if start < 0 or self.buf[start] != 0x7B:  # "{"
            return -1
        search = start + 1
        while True:
            buf = self.buf
            m = _CONVERSATIONS_MEMBER.search(buf, search)
            if m is None:
                if self.eof or len(buf) - start > _WRAPPED_SCAN:
                    return -1
                search = max(search, len(buf) - 64)
                self._fill()
                continue
            before = bytes(buf[start:m.start()]).rstrip(b" \t\r\n")
            try:
                orjson.loads(before[:-1] + b"}" if before.endswith(b",") else before + b"}")
            except orjson.JSONDecodeError:
                search = m.start() + 1  # a nested "conversations"
                continue
            return m.end()

    def _expect_end(self, pos: int) -> None:
        """After the closing "]": only whitespace, or in a wrapper the rest of the object."""
        rest = self._skip_ws(pos)
        if not self.wrapped:
            if rest >= 0:
                raise self._invalid("unexpected content after the list of conversations")
            return
        if rest < 0:
            raise self._truncated()
        if self.buf[rest] == 0x7D:  # "}"
            if self._skip_ws(rest + 1) >= 0:
                raise self._invalid("unexpected content after the top-level object")
            return
        if self.buf[rest] != 0x2C:  # ","
            raise self._invalid("expected ',' or '}' after the list of conversations")
        # Other members follow: ijson checks they are well-formed, streaming.
        tail = b"{" + bytes(self.buf[rest + 1:])
        self.buf = bytearray()
        self.reader.guard_depth = True
        self.reader.check_depth(tail)
        tail = self.reader.scrub(tail)
        try:
            for _ in backend.yajl2_c.basic_parse(_Replay(tail, self.reader)):
                pass
        except backend.JSONError as e:
            raise translate_error(e, self.reader) from None

    def _ijson_from(self, start: int, wrap: bool = True) -> Iterator[object]:
        """Hand the stream from ``start`` to ijson (reopening the list when mid-list)."""
        self.handed_off = True
        opening = (b'{"conversations":[' if self.wrapped else b"[") if wrap else b""
        head = opening + bytes(self.buf[start:])
        self.buf = bytearray()
        self.reader.guard_depth = True
        self.reader.check_depth(head)
        head = self.reader.scrub(head)
        yield from iter_items(_Replay(head, self.reader), "conversations.item" if self.wrapped else "item")

    # ------------------------------------------------------------------ errors
    def _check_nesting(self, start: int, end: int, opens: int | None = None) -> None:
        """Refuse an element nested past the limit (orjson alone stops at 1,024)."""
        buf = self.buf
        if opens is None:
            opens = buf.count(b"{", start, end) + buf.count(b"[", start, end)
        if opens > self.max_depth and nesting_exceeds(buf[start:end].translate(_PARENS, _NOT_BRACKETS), self.max_depth):
            raise too_deep(self.max_depth, self.reader.name)

    def _refuse(self, e: orjson.JSONDecodeError) -> None:
        """Raise the ExportError for what ijson would refuse too; return for anything else."""
        msg = e.msg
        if msg.startswith("depth limit exceeded"):
            raise too_deep(min(self.max_depth, ORJSON_MAX_DEPTH), self.reader.name) from None
        if "UTF-8" in msg and "surrogate" not in msg:
            raise ExportError(
                "invalid_utf8",
                f"invalid UTF-8 in {self.reader.name} within the first {self.reader.bytes_read:,} bytes",
            ) from None

    def _truncated(self) -> ExportError:
        return ExportError("truncated", f"truncated JSON in {self.reader.name} after {self.reader.bytes_read:,} bytes")

    def _invalid(self, what: str) -> ExportError:
        return ExportError(
            "not_json", f"invalid JSON in {self.reader.name} within the first {self.reader.bytes_read:,} bytes: {what}",
        )


def whole_chars(buf: bytearray) -> int:
    """``len(buf)``, less the first bytes of a UTF-8 character cut off at its end."""
    end = len(buf)
    lead = end - 1
    while lead >= 0 and end - lead <= 4 and buf[lead] & 0xC0 == 0x80:  # continuation bytes
        lead -= 1
    if lead < 0 or buf[lead] < 0xC0:
        return end  # ASCII (or stray continuation bytes: orjson explains those)
    size = 2 if buf[lead] < 0xE0 else 3 if buf[lead] < 0xF0 else 4
    return lead if end - lead < size else end


class _Replay:
    """A reader that serves ``head`` first, then the rest of ``reader``: what ijson sees on a hand-off."""

    def __init__(self, head: bytes, reader: CappedReader) -> None:
        self._head = head
        self._reader = reader

    @property
    def name(self) -> str:
        return self._reader.name

    @property
    def bytes_read(self) -> int:
        return self._reader.bytes_read

    def mark(self) -> None:
        self._reader.mark()

    def read(self, n: int = -1) -> bytes:
        if n == 0:
            return b""
        if self._head:
            head, self._head = self._head, b""
            return head
        return self._reader.read(n)

    def close(self) -> None:
        self._reader.close()


def iter_conversations(reader: CappedReader, prefix: str) -> Iterator[object]:
    """The items at ``prefix``: a top-level list, or the "conversations" list of
    a top-level object, is cut into elements for orjson (ArrayItems); any
    other shape (one conversation object) goes through ijson."""
    if prefix not in ("item", "conversations.item"):
        yield from iter_items(reader, prefix)
        return
    try:
        yield from ArrayItems(reader, wrapped=prefix != "item")
    except READ_ERRORS as e:
        raise translate_error(e, reader) from None
