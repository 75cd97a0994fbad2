"""Resumable (tus) uploads (table tus_uploads): how far each upload is, whose it is, when it expires.

Every read and write names the person as well as the upload, so another
person's upload id finds nothing (the route answers 404). A PATCH works inside
``patching()``: one transaction holding the row's lock for as long as the body
streams, so a second PATCH of the same upload is refused at once (``Busy``)
instead of writing beside the first; the offset it reached is written in that
same transaction. If the process dies mid-PATCH the transaction rolls back and
the row keeps the last offset that was committed (the part file is cut back to
it on the next PATCH).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import AsyncIterator

import asyncpg

_COLUMNS = ("upload_id, user_id, upload_length, upload_offset, metadata, expires_at, completed_at, job_id,"
            " expires_at <= now() AS expired")


class Busy(Exception):
    """Another request holds this upload (a PATCH in progress)."""


@dataclass(frozen=True)
class Upload:
    upload_id: str
    user_id: str
    length: int
    offset: int
    metadata: dict
    expires_at: datetime
    completed_at: datetime | None
    job_id: str | None
    expired: bool

    @property
    def complete(self) -> bool:
        return self.completed_at is not None


def _upload(row: asyncpg.Record | None) -> Upload | None:
    if row is None:
        return None
    return Upload(upload_id=row["upload_id"], user_id=row["user_id"], length=row["upload_length"],
                  offset=row["upload_offset"], metadata=row["metadata"],
                  expires_at=row["expires_at"], completed_at=row["completed_at"], job_id=row["job_id"],
                  expired=row["expired"])


class Patch:
    """One PATCH's hold on its upload: the row as it was locked, and the writes that end the PATCH."""

    def __init__(self, conn: asyncpg.Connection, upload: Upload) -> None:
        self.conn = conn
        self.upload = upload

    async def advance(self, offset: int) -> None:
        await self.conn.execute("UPDATE tus_uploads SET upload_offset = $2 WHERE upload_id = $1",
                                self.upload.upload_id, offset)

    async def complete(self, job_id: str) -> None:
        await self.conn.execute(
            "UPDATE tus_uploads SET upload_offset = upload_length, completed_at = now(), job_id = $2"
            " WHERE upload_id = $1", self.upload.upload_id, job_id)

    async def remove(self) -> None:
        await self.conn.execute("DELETE FROM tus_uploads WHERE upload_id = $1", self.upload.upload_id)


class Resumable:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, upload_id: str, user_id: str, length: int, metadata: dict, expires_s: float) -> Upload:
        return _upload(await self.pool.fetchrow(
            "INSERT INTO tus_uploads (upload_id, user_id, upload_length, metadata, expires_at)"
            f" VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) RETURNING {_COLUMNS}",
            upload_id, user_id, length, metadata, expires_s,
        ))

    async def get(self, upload_id: str, user_id: str) -> Upload | None:
        return _upload(await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM tus_uploads WHERE upload_id = $1 AND user_id = $2", upload_id, user_id))

    @asynccontextmanager
    async def patching(self, upload_id: str, user_id: str) -> AsyncIterator[Patch | None]:
        """The upload locked for one PATCH (None: no such upload of this person); Busy if another holds it.

        What the block writes through the ``Patch`` commits when it ends, and rolls back if it raises."""
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                row = await conn.fetchrow(
                    f"SELECT {_COLUMNS} FROM tus_uploads WHERE upload_id = $1 AND user_id = $2 FOR UPDATE NOWAIT",
                    upload_id, user_id)
            except asyncpg.LockNotAvailableError:
                raise Busy(upload_id) from None
            upload = _upload(row)
            yield Patch(conn, upload) if upload is not None else None

    async def delete(self, upload_id: str, user_id: str) -> bool:
        """Terminate: False if there is no such upload of this person; Busy while a PATCH holds it."""
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                found = await conn.fetchval(
                    "SELECT 1 FROM tus_uploads WHERE upload_id = $1 AND user_id = $2 FOR UPDATE NOWAIT",
                    upload_id, user_id)
            except asyncpg.LockNotAvailableError:
                raise Busy(upload_id) from None
            if found:
                await conn.execute("DELETE FROM tus_uploads WHERE upload_id = $1", upload_id)
            return bool(found)

    async def sweep_expired(self, kept_s: float) -> tuple[list[str], list[str]]:
        """The expired uploads no PATCH holds: the ids whose rows this deletes (expired more than
        ``kept_s`` ago) and the ids still kept, answering 410; both for their part files."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT upload_id, expires_at <= now() - make_interval(secs => $1) AS old FROM tus_uploads"
                " WHERE expires_at <= now() FOR UPDATE SKIP LOCKED", kept_s)
            old = [r["upload_id"] for r in rows if r["old"]]
            if old:
                await conn.execute("DELETE FROM tus_uploads WHERE upload_id = ANY($1::text[])", old)
        return old, [r["upload_id"] for r in rows if not r["old"]]

    async def existing(self, upload_ids: list[str]) -> set[str]:
        rows = await self.pool.fetch("SELECT upload_id FROM tus_uploads WHERE upload_id = ANY($1::text[])",
                                     upload_ids)
        return {r["upload_id"] for r in rows}

    async def ids_of(self, user_id: str) -> list[str]:
        """The person's upload ids (erasure removes their part files once the rows are gone)."""
        return [r["upload_id"] for r in await self.pool.fetch(
            "SELECT upload_id FROM tus_uploads WHERE user_id = $1", user_id)]
