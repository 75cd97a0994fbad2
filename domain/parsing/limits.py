"""Caps that keep a hostile or broken export from eating the worker."""

from __future__ import annotations

from dataclasses import dataclass

GiB = 1 << 30
MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class ParseLimits:
    # Total uncompressed JSON bytes read from one export (every conversations
    # file of a zip or folder, plus the manifest). Real exports with years of
    # history are a few hundred MB; 8 GiB is far past that yet bounds a bomb.
    max_uncompressed_bytes: int = 8 * GiB
    # Per zip member we read: uncompressed size / compressed size. JSON chat
    # text deflates about 3-10:1; a bomb of zeros reaches ~1000:1. Only checked
    # for members we actually read, and only once they are big enough for the
    # ratio to mean something (see source.RATIO_MIN_BYTES); media is never read.
    max_compression_ratio: float = 200
    # Bytes read since the previous conversation was emitted: one conversation
    # (with its whole tree of branches) may not exceed this. Keeps memory
    # bounded, since a conversation is parsed and chunked as one Python object.
    # Sized by measurement to the 512 MB budget of a worker that also embeds
    # (bench/README.md, "One very large conversation"): a conversation of
    # 4-byte characters peaks at 506 MB for 20 MB and 642 MB for 29 MB.
    max_conversation_bytes: int = 16 * MiB
    # Characters in one message after normalisation; longer raises
    # ExportError("message_too_large") naming the conversation.
    max_message_chars: int = 2_000_000
    # JSON nesting depth (arrays and objects). Real exports nest ~10-15 deep.
    # 1,024 is orjson's own limit, which checks it exactly on the main path
    # (see framing); a lower value costs a bracket count per conversation.
    # ijson's item builder is quadratic in depth, so on its path deeper input
    # is refused before ijson sees it (see capped.CappedReader).
    max_nesting_depth: int = 1024

    def __post_init__(self) -> None:
        for name in ("max_uncompressed_bytes", "max_conversation_bytes", "max_message_chars", "max_nesting_depth"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ParseLimits.{name} must be positive")
        if self.max_compression_ratio <= 1:
            raise ValueError("ParseLimits.max_compression_ratio must be above 1")
