"""A byte-counting file wrapper that enforces ParseLimits while ijson reads.

ijson pulls 64 KiB at a time through ``read(n)``; every limit that depends on
the bytes actually decompressed (declared zip sizes can lie) is enforced here,
before the chunk reaches the parser:

* total uncompressed bytes across the export (``max_uncompressed_bytes``);
* bytes since the last emitted conversation (``max_conversation_bytes``);
  the parser calls :meth:`CappedReader.mark` after each item;
* the actual compression ratio of a zip member;
* nesting depth. ijson's item builder is quadratic in nesting depth (every
  container open builds a prefix string as long as the current path: depth
  10,000 costs 0.17 s, 30,000 costs 2.8 s, 1,000,000 never finishes), so deep
  input must be refused before yajl parses it.

The depth guard runs at C speed: ``bytes.translate`` drops every byte but the
brackets (mapped to ``(`` and ``)``), repeated ``replace(b"()", b"")`` strips
matched pairs (one pass per nesting level inside the chunk) and what is left is
``)))(((``: closes of containers opened earlier, then opens still pending. A
running open count carries across chunks. Brackets inside JSON strings are
counted too, since telling strings apart needs escape handling that costs ~5x
more: an unbalanced ``[`` in a message only over-counts (safe), and the count
restarts at every :meth:`mark` so such drift never accumulates past one
conversation. Known limitation: a ``]`` inside a string cancels a real open,
so a crafted file (``["]",["]",...``) hides its nesting from this guard; closing
that gap means tracking strings and escapes, about 5x the cost of this pass
. That gap is left only where ijson parses: a single conversation object,
a manifest, or a hand-off from the framer (a lone surrogate, say). A list of
conversations (bare or as a ``{"conversations": [...]}`` member), every
export's shape, goes through framing.ArrayItems, which switches this guard
off, checks each element's brackets as a whole and lets orjson count the real
nesting (it stops at 1,024 levels).
"""

from __future__ import annotations

from .errors import ExportError, fmt_size
from .limits import ParseLimits
from .surrogates import SurrogateScrubber

# Deletes every byte but the four brackets, then maps opens to "(" and closes to ")".
_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_BOM = b"\xef\xbb\xbf"

# Below this many bytes a zip member's actual ratio is not checked: a small
# file of whitespace may compress 500:1 and is harmless.
RATIO_MIN_BYTES = 1 << 20


def too_deep(limit: int, where: str) -> ExportError:
    return ExportError("too_deep", f"JSON nesting deeper than {limit} levels in {where}")


def nesting_exceeds(parens: bytes, limit: int) -> bool:
    """Whether one complete value, as its brackets mapped to "(" and ")", may nest past ``limit``.

    Blind to strings, like the reader's guard, so an upper-bound estimate:
    matched pairs are stripped a level per pass, and brackets left unmatched
    (from text) count as levels too.
    """
    opens = parens.count(b"(")
    if opens <= limit:
        return False
    passes = 0
    while b"()" in parens:
        parens = parens.replace(b"()", b"")
        passes += 1
        if passes > limit:
            return True
    return passes + parens.count(b"(") > limit


class Budget:
    """Total uncompressed bytes read for one export, shared by its readers."""

    __slots__ = ("used", "limit", "code", "what", "surrogates")

    def __init__(self, limit: int, code: str, what: str) -> None:
        self.used = 0
        self.surrogates = 0  # lone surrogates replaced in what ijson parsed (see surrogates.py)
        self.limit = limit
        self.code = code  # "zip_bomb" for archives, "too_large" for files and folders
        self.what = what  # the export's display name, for messages


class CappedReader:
    """``read(n)`` wrapper around one binary stream (a file or a zip member)."""

    __slots__ = (
        "_raw", "name", "_limits", "_budget", "bytes_read", "_since_mark",
        "_depth", "_compressed", "_first", "guard_depth", "_scrubber", "_raw_done",
    )

    def __init__(self, raw, name: str, limits: ParseLimits, budget: Budget,
                 compressed_size: int | None = None) -> None:
        self._raw = raw
        self.name = name
        self._limits = limits
        self._budget = budget
        self.bytes_read = 0  # bytes handed to the parser from this stream
        self._since_mark = 0
        self._depth = 0  # brackets still open since the last mark (upper-bound estimate)
        self._compressed = compressed_size  # zip members only
        self._first = True
        # The framer (framing.ArrayItems) checks each element's nesting itself,
        # exactly per element, and switches this off; ijson needs it on, and
        # lone surrogates replaced (orjson refuses them, yajl mangles them).
        self.guard_depth = True
        self._scrubber = SurrogateScrubber()
        self._raw_done = False

    @property
    def limits(self) -> ParseLimits:
        return self._limits

    def mark(self) -> None:
        """An item was emitted: restart the per-conversation byte and depth counts.

        ijson reads ahead at most one chunk, so up to 64 KiB of the next
        conversation is forgiven; both caps are far above that.
        """
        self._since_mark = 0
        self._depth = 0

    def read(self, n: int = -1) -> bytes:
        if n == 0:
            return b""  # ijson probes read(0) to tell bytes from text
        if n is None or n < 0:
            n = 1 << 16  # never an unbounded read
        while True:
            data = self._read(n)
            if not self.guard_depth:
                return data
            # The scrubber may hold back the last bytes of a chunk (half an escape).
            data = self.scrub(data, final=not data)
            if data or self._raw_done:
                return data

    def scrub(self, data: bytes, final: bool = False) -> bytes:
        """``data`` with lone surrogate escapes replaced (streaming: a tail may come back later)."""
        out, replaced = self._scrubber.feed(data, final)
        self._budget.surrogates += replaced
        return out

    def _read(self, n: int) -> bytes:
        data = self._raw.read(n)
        if not data:
            self._raw_done = True
            return data
        if self._first:
            self._first = False
            if data.startswith(_BOM):  # yajl rejects a BOM; exports written on Windows have one
                data = data[3:]
        size = len(data)
        self.bytes_read += size
        budget = self._budget
        budget.used += size
        if budget.used > budget.limit:
            raise ExportError(
                budget.code,
                f"{budget.what} expands past {fmt_size(budget.limit)} of JSON "
                f"(limit max_uncompressed_bytes) while reading {self.name}",
            )
        limits = self._limits
        self._since_mark += size
        if self._since_mark > limits.max_conversation_bytes:
            raise ExportError(
                "too_large",
                f"one conversation in {self.name} is larger than "
                f"{fmt_size(limits.max_conversation_bytes)} (limit max_conversation_bytes)",
            )
        if (self._compressed is not None and self.bytes_read > RATIO_MIN_BYTES
                and self.bytes_read > limits.max_compression_ratio * max(self._compressed, 1)):
            raise ExportError(
                "zip_bomb",
                f"zip member {self.name} expands more than {limits.max_compression_ratio:g}:1 "
                f"(limit max_compression_ratio)",
            )
        if self.guard_depth:
            self.check_depth(data)
        return data

    def check_depth(self, data: bytes) -> None:
        limit = self._limits.max_nesting_depth
        brackets = data.translate(_BRACKETS, _NOT_BRACKETS)
        if not brackets:
            return
        depth = self._depth
        opens = brackets.count(b"(")
        if depth + opens <= limit:
            # Common case: even if every open nested, the chunk stays under the
            # limit; only the running count is needed, not the pair stripping.
            depth += opens + opens - len(brackets)  # + opens - closes
            self._depth = depth if depth > 0 else 0
            return
        passes = 0  # nesting depth of the pairs matched inside this chunk
        while b"()" in brackets:
            brackets = brackets.replace(b"()", b"")
            passes += 1
            if passes > limit:
                self._too_deep()
        # Left: ")" * closes + "(" * opens, closes of earlier opens come first.
        closes = brackets.find(b"(")
        if closes < 0:
            closes = len(brackets)
        opens = len(brackets) - closes
        depth -= closes
        if depth < 0:  # count restarted at mark(): the rest of the previous item
            depth = 0
        # Deepest point in the chunk is at most: carried depth + pending opens + inner pairs.
        if depth + opens + passes > limit:
            self._too_deep()
        self._depth = depth + opens

    def _too_deep(self):
        raise too_deep(self._limits.max_nesting_depth, self.name)

    def close(self) -> None:
        self._raw.close()
