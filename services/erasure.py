"""Erasing a person: every row in one transaction (services/db/erasure.py), then their stored files
and the part files of their unfinished resumable uploads.

The files go after the commit: a transaction cannot take back a deleted file,
and a file left behind by a failure is found again by the next call (storage
keys are per person), so ``delete_person`` is safe to run again until it
succeeds, and running it for someone already erased deletes nothing and says
so. The receipt is what the CLI prints and DELETE /v1/people/{id} answers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from soulprint.models.text import one_line

if TYPE_CHECKING:
    from soulprint.services.db import Database
    from soulprint.services.storage import Storage

log = logging.getLogger("soulprint.erasure")


class PartUploads(Protocol):
    """The bytes of unfinished resumable uploads (services/http/tus.ResumableUploads)."""

    async def ids_of(self, user_id: str) -> list[str]: ...

    def remove_parts(self, upload_ids: list[str]) -> int: ...


class FilesRemain(Exception):
    """The rows are gone but stored files could not be removed: run the erasure again."""


class Erasure:
    def __init__(self, db: "Database", storage: "Storage | None", uploads: PartUploads | None = None) -> None:
        self.db = db
        self.storage = storage
        self.uploads = uploads

    async def delete_person(self, user_id: str) -> dict[str, Any]:
        """{"user_id", "erased_at", "tables": {table: rows deleted}, "files": n}: ``files`` counts the
        stored exports and the part files of unfinished uploads."""
        # Read before the rows go; an upload created in between is an orphan the next sweep removes.
        parts = await self.uploads.ids_of(user_id) if self.uploads is not None else []
        erased_at, tables = await self.db.erasure.delete_person(user_id)
        files = self.uploads.remove_parts(parts) if parts else 0
        if self.storage is not None:
            try:
                files += await self.storage.delete_person(user_id)
            except Exception as exc:  # noqa: BLE001 - any backend's failure: the same answer, try again
                log.warning("erasure of a person: stored files not removed: %s", one_line(exc))
                raise FilesRemain(f"the person's rows are erased but their stored files could not be removed"
                                  f" ({type(exc).__name__}); run the erasure again") from None
        return {"user_id": user_id, "erased_at": erased_at.isoformat(), "tables": tables, "files": files}
