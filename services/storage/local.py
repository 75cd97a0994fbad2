"""Exports in a local directory: ``<root>/<person>/<job id>/export.<kind>`` (the default storage).

An upload is written to a hidden part file in the person's own directory and
renamed into place on commit, so a reader never sees half a file and erasing
the person's directory also removes an upload still under way. Every file
operation runs off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

from soulprint.services.storage.base import Sink, Storage, StorageError, person_segment


class _FileSink(Sink):
    def __init__(self, part: Path, final: Path) -> None:
        self.part, self.final = part, final
        self.handle = None

    async def open(self) -> "_FileSink":
        def create():
            self.part.parent.mkdir(parents=True, exist_ok=True)
            self.handle = open(self.part, "xb")
        await _io(create)
        return self

    async def write(self, data: bytes) -> None:
        await _io(self.handle.write, data)

    async def commit(self) -> str:
        def finish():
            self.handle.close()
            self.final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.part, self.final)
        await _io(finish)
        return self.final.as_uri()

    async def abort(self) -> None:
        def remove():
            if self.handle is not None:
                self.handle.close()
            self.part.unlink(missing_ok=True)
            _prune(self.part.parent)
        with contextlib.suppress(OSError):
            await asyncio.to_thread(remove)


class LocalStorage(Storage):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    async def open_sink(self, key: str) -> Sink:
        person = key.split("/", 1)[0]
        part = self.root / person / f".incoming-{uuid.uuid4().hex}"
        return await _FileSink(part, self.root / key).open()

    @contextlib.asynccontextmanager
    async def download(self, uri: str):
        raise StorageError(f"not a file of this storage ({self.root}): {uri.split(':', 1)[0]}:// uri")
        yield  # pragma: no cover - an async generator that never yields

    async def delete(self, uri: str) -> None:
        path = Path(unquote(urlparse(uri).path))
        if self.root not in path.parents:
            raise StorageError(f"not a file of this storage ({self.root})")

        def remove():
            path.unlink(missing_ok=True)
            _prune(path.parent)
        await _io(remove)

    async def delete_person(self, user_id: str) -> int:
        folder = self.root / person_segment(user_id)

        def remove() -> int:
            if not folder.exists():
                return 0
            count = sum(1 for p in folder.rglob("*") if p.is_file())
            shutil.rmtree(folder)
            return count
        return await _io(remove)

    async def list_person(self, user_id: str) -> list[str]:
        folder = self.root / person_segment(user_id)

        def walk() -> list[str]:
            return sorted(p.as_uri() for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        return await _io(walk)


def _prune(folder: Path) -> None:
    """Remove a folder the removal left empty (a job's, or a person's with nothing else)."""
    with contextlib.suppress(OSError):
        folder.rmdir()


async def _io(fn, *args):
    try:
        return await asyncio.to_thread(fn, *args)
    except OSError as exc:
        raise StorageError(f"storage: {exc.strerror or exc}") from None
