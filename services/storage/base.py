"""What every storage backend shares: the stored record, the sniffing, the hashing, the size limit, the keys.

A backend only writes bytes (a ``Sink``), downloads, lists and deletes; the
checks an upload must pass run here once, while the bytes go through, so no
backend ever holds a whole export in memory and none keeps a file that failed.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncContextManager, AsyncIterator
from urllib.parse import quote, unquote, urlparse

ZIP_MAGIC = b"PK\x03\x04"
UTF8_BOM = b"\xef\xbb\xbf"
JSON_WHITESPACE = b" \t\r\n"
# JSON may start with whitespace; past this much of it, it is not an export.
SNIFF_LIMIT = 64 << 10
# Bytes handed to a sink at once: large enough that a thread hop per write is cheap.
WRITE_BYTES = 1 << 20
KINDS = ("zip", "json")
_NAME_PART = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Stored:
    uri: str  # file:///... or s3://bucket/key: what ImportRequested.source_uri carries
    size: int
    sha256: str  # hex
    kind: str  # "zip" | "json"


class NotAnExport(Exception):
    """The first bytes are neither a zip (PK\\x03\\x04) nor JSON ([ or { after an optional BOM and whitespace)."""


class TooLarge(Exception):
    """More bytes than the limit."""


class StorageError(Exception):
    """The storage itself failed (a bucket that is missing or refuses us, a full disk); one line, no secret."""


def sniff(head: bytes, *, final: bool) -> str | None:
    """"zip" or "json" once the first bytes decide, None while more are needed (``final``: no more come).

    NotAnExport when they decide against, or when the body ends (or passes
    SNIFF_LIMIT) undecided."""
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if not final and len(head) < len(ZIP_MAGIC) and ZIP_MAGIC.startswith(head):
        return None
    if not final and len(head) < len(UTF8_BOM) and UTF8_BOM.startswith(head):
        return None
    text = head[len(UTF8_BOM):] if head.startswith(UTF8_BOM) else head
    first = text.lstrip(JSON_WHITESPACE)[:1]
    if first in (b"[", b"{"):
        return "json"
    if first:
        raise NotAnExport("not a zip or JSON export: the upload starts with neither a zip header nor [ or {")
    if final or len(head) >= SNIFF_LIMIT:
        raise NotAnExport("the upload is empty" if not head else
                          "not a zip or JSON export: the upload holds only whitespace")
    return None


def person_segment(user_id: str) -> str:
    """The person as one path segment and key part: percent-encoded, '.' included (no '..' ever)."""
    if not user_id:
        raise ValueError("a stored file needs a person")
    return quote(user_id, safe="").replace(".", "%2E")


def object_name(name: str, kind: str) -> str:
    """``<job id>/export`` (any .zip/.json suffix replaced) + ``.<kind>``; checked to stay inside the person's."""
    stem = re.sub(r"\.(zip|json)$", "", name)
    parts = stem.split("/")
    if not all(_NAME_PART.match(p) for p in parts):
        raise ValueError(f"not a storable name: {name!r}")
    return f"{stem}.{kind}"


class Sink(abc.ABC):
    """Where one upload's bytes go, in order; nothing is visible under its key before ``commit``."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    async def commit(self) -> str:
        """Make the object visible; its uri."""

    @abc.abstractmethod
    async def abort(self) -> None:
        """Remove whatever was written (never raises)."""


class Storage(abc.ABC):
    """An export store. ``save`` streams, sniffs, hashes and bounds; a backend provides the rest."""

    async def save(self, user_id: str, name: str, chunks: AsyncIterator[bytes], *, limit: int) -> Stored:
        """Store ``chunks`` as the person's ``name``: NotAnExport, TooLarge or StorageError leave nothing behind."""
        person = person_segment(user_id)
        digest = hashlib.sha256()
        pending = bytearray()
        size = 0
        sink: Sink | None = None
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"the export is larger than {limit} bytes")
                digest.update(chunk)
                pending += chunk
                if sink is None:
                    kind = sniff(bytes(pending[:SNIFF_LIMIT]), final=False)
                    if kind is None:
                        continue
                    sink = await self.open_sink(f"{person}/{object_name(name, kind)}")
                if len(pending) >= WRITE_BYTES:
                    await sink.write(bytes(pending))
                    pending.clear()
            if sink is None:
                kind = sniff(bytes(pending), final=True)
                sink = await self.open_sink(f"{person}/{object_name(name, kind)}")
            if pending:
                await sink.write(bytes(pending))
            uri = await sink.commit()
        except BaseException:
            if sink is not None:
                await asyncio.shield(sink.abort())
            raise
        return Stored(uri=uri, size=size, sha256=digest.hexdigest(), kind=kind)

    async def save_file(self, user_id: str, name: str, path: Path) -> Stored:
        """A finished file (a tus upload) into storage, by the same checks as ``save`` (no size limit)."""
        return await self.save(user_id, name, read_file(Path(path)), limit=1 << 62)

    def local_copy(self, uri: str) -> AsyncContextManager[Path]:
        """A readable local path for ``uri``: a file:// path is itself; a stored object is downloaded to a
        temporary file, removed on exit."""
        if uri.startswith("file:"):
            return contextlib.nullcontext(Path(unquote(urlparse(uri).path)))
        return self.download(uri)

    @abc.abstractmethod
    async def open_sink(self, key: str) -> Sink: ...

    @abc.abstractmethod
    def download(self, uri: str) -> AsyncContextManager[Path]: ...

    @abc.abstractmethod
    async def delete(self, uri: str) -> None:
        """Remove one stored file (a file already gone is fine)."""

    @abc.abstractmethod
    async def delete_person(self, user_id: str) -> int:
        """Remove every stored file of the person; how many were removed."""

    @abc.abstractmethod
    async def list_person(self, user_id: str) -> list[str]:
        """The uris of every stored file of the person."""


async def read_file(path: Path, chunk_bytes: int = WRITE_BYTES) -> AsyncIterator[bytes]:
    """A file's bytes, read off the event loop."""
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, chunk_bytes):
            yield chunk
    finally:
        handle.close()
