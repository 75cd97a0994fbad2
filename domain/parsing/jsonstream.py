"""Streaming JSON: sniff a file's top-level shape, then yield its conversations.

All parsing goes through ijson's yajl2_c backend over a CappedReader, and every
exception a parser or decompressor can raise is turned into an ExportError
here, so nothing library-specific reaches callers.
"""

from __future__ import annotations

import zlib
import zipfile
from typing import Callable, Iterator

from . import backend
from .capped import CappedReader
from .errors import ExportError

_WHITESPACE = b" \t\r\n"
_SCALAR_START = b'"-0123456789tfn'


def first_byte(reader: CappedReader) -> int | None:
    """The first non-whitespace byte of a stream (BOM already stripped), or None."""
    while True:
        chunk = reader.read(4096)
        if not chunk:
            return None
        stripped = chunk.lstrip(_WHITESPACE)
        if stripped:
            return stripped[0]


def translate_error(e: BaseException, reader: CappedReader) -> ExportError:
    """Map a parser, decompression or decoding failure to a one-line ExportError."""
    if isinstance(e, ExportError):
        return e
    where = reader.name
    n = reader.bytes_read
    if isinstance(e, UnicodeDecodeError):
        return ExportError("invalid_utf8", f"invalid UTF-8 in {where} within the first {n:,} bytes")
    if isinstance(e, RecursionError):
        return ExportError("too_deep", f"JSON nested too deeply in {where}")
    if isinstance(e, EOFError):  # a zip member whose deflate stream stops early
        return ExportError("truncated", f"truncated zip member {where} after {n:,} bytes")
    if isinstance(e, (zipfile.BadZipFile, zlib.error)):
        return ExportError("bad_zip", f"corrupt zip member {where}: {_first_line(e)}")
    if isinstance(e, OSError):
        return ExportError("io_error", f"cannot read {where}: {e.strerror or _first_line(e)}")
    text = _first_line(e)
    if "premature EOF" in text:
        return ExportError("truncated", f"truncated JSON in {where} after {n:,} bytes")
    if "UTF8" in text or "UTF-8" in text:
        return ExportError("invalid_utf8", f"invalid UTF-8 in {where} within the first {n:,} bytes")
    return ExportError("not_json", f"invalid JSON in {where} within the first {n:,} bytes: {text}")


def _first_line(e: BaseException) -> str:
    arg = e.args[0] if e.args else e
    if isinstance(arg, bytes):  # yajl's messages come as bytes with a caret diagram below
        arg = arg.decode("utf-8", "replace")
    lines = [line.strip() for line in str(arg).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


# Exceptions a read can raise besides our own: yajl, a broken zip, bad bytes.
READ_ERRORS = (
    backend.JSONError, UnicodeDecodeError, RecursionError, EOFError,
    zipfile.BadZipFile, zlib.error, OSError,
)


def conversations_prefix(open_reader: Callable[[], CappedReader], display: str, not_json: str) -> str:
    """The ijson prefix of the conversations in one file, from its first bytes.

    ``[...]`` -> "item"; ``{"conversations": [...]}`` -> "conversations.item";
    a single conversation object (``mapping`` or ``chat_messages`` key) -> "".
    Reads a throwaway stream: an object's keys usually come first, so this
    costs a few KiB. ``not_json`` is the message for bytes that are not JSON.
    """
    reader = open_reader()
    first = None
    try:
        try:
            first = first_byte(reader)
            if first is None:
                raise ExportError("empty", f"{display} is empty")
            if first == ord("["):
                return "item"
            if first == ord("{"):
                reader.close()
                reader = open_reader()
                return _object_prefix(reader, display)
            if first in _SCALAR_START:
                reader.close()
                reader = open_reader()
                for _ in backend.yajl2_c.basic_parse(reader):
                    pass
                raise ExportError("bad_shape", f"{display} holds a single JSON value, not a list of conversations")
        except READ_ERRORS as e:
            err = translate_error(e, reader)
            if err.code == "not_json" and first not in (ord("["), ord("{")):
                raise ExportError("not_json", not_json) from None
            raise err from None
        raise ExportError("not_json", not_json)
    finally:
        reader.close()


def _object_prefix(reader: CappedReader, display: str) -> str:
    events = backend.yajl2_c.parse(reader, buf_size=16384)
    for prefix, event, value in events:
        if prefix:
            continue  # inside some other top-level value
        if event == "map_key":
            if value == "conversations":
                _, kind, _ = next(events)
                if kind == "start_array":
                    return "conversations.item"
                raise ExportError("bad_shape", f'"conversations" in {display} is not a list')
            if value in ("mapping", "chat_messages"):
                return ""  # one conversation object (claude.ai web app, or one ChatGPT chat)
        elif event == "end_map":
            break
    raise ExportError("bad_shape", f"{display} is a JSON object without conversations")


def iter_items(reader: CappedReader, prefix: str) -> Iterator[object]:
    """Yield each value at ``prefix``, one at a time; mark the reader after each."""
    items = backend.yajl2_c.items(reader, prefix, use_float=True)
    try:
        for item in items:
            yield item
            reader.mark()
    except READ_ERRORS as e:
        raise translate_error(e, reader) from None

