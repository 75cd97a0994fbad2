"""The one exception the parser lets out, with a short machine code.

Every bad input ends as ``ExportError``: callers (the upload API, the CLI) show
``str(e)`` to a person as is and branch on ``e.code``, so the message is always
one line and never carries a library's traceback text.
"""

from __future__ import annotations

from ...models.text import one_line

#: Machine codes, each with what it means for the person who uploaded the file.
CODES = {
    "not_found": "the path does not exist or holds no conversations file",
    "not_json": "neither a zip nor JSON, or JSON with a syntax error",
    "truncated": "the JSON (or the zip member) ends early",
    "bad_shape": "valid JSON but not an export (wrong top-level value or items)",
    "empty": "the export has no conversation with content",
    "zip_bomb": "a zip member expands far more than real exports do",
    "unsafe_zip": "a zip member name could escape the extraction folder",
    "bad_zip": "the zip archive itself is corrupt or encrypted",
    "cyclic_tree": "a ChatGPT conversation's parent links form a loop",
    "dangling_parent": "a ChatGPT node names a parent that is not in the mapping",
    "message_too_large": "one message is longer than ParseLimits.max_message_chars",
    "invalid_utf8": "the JSON text is not valid UTF-8",
    "too_deep": "JSON nested deeper than ParseLimits.max_nesting_depth",
    "too_large": "more bytes than ParseLimits allow (whole export or one conversation)",
    "not_regular": "the export, or a file in it that is read, is not a regular file or folder "
                   "(a FIFO, a device, a socket) or is a symlink out of the export folder",
    "io_error": "the file could not be read",
    "no_c_backend": "ijson's C backend (yajl2_c) is not installed",
}


class ExportError(Exception):
    """A bad export. ``str(e)`` is one human line; ``e.code`` is a key of CODES.

    Built as ``ExportError(code, message)`` (how the parser raises it) or
    ``ExportError(message, code=...)``; a bare ``ExportError(message)`` gets
    the code "error".
    """

    def __init__(self, *args: str, code: str | None = None) -> None:
        if len(args) == 2 and code is None:
            code, message = args
        elif len(args) == 1:
            message = args[0]
        else:
            raise TypeError("ExportError(code, message) or ExportError(message, code=...)")
        code = code or "error"
        # Names from the archive or exception text may hold newlines: keep one line.
        message = one_line(message)
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"ExportError({self.code!r}, {self.message!r})"

    def __reduce__(self):  # picklable across process pools
        return (type(self), (self.code, self.message))


def fmt_bytes(n: int) -> str:
    """1234567 -> '1,234,567 bytes' (exact counts read better in error lines)."""
    return f"{n:,} bytes"


def fmt_size(n: int) -> str:
    """A human size for limits: 8 GiB, 64 MiB, 512 KiB, 100 bytes."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"
