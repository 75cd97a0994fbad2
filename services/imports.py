"""An upload becomes an import: store the export, refuse a duplicate, create the job, publish ImportRequested.

One path for every way an export arrives: a raw or multipart POST
(``submit``), a finished resumable upload (``submit_stored``, from
services/http/tus.py) and `soulprint import` on external infrastructure. The
workers then read the export from storage, never from the uploader's disk.

The Kafka producer is opened on the first import and kept for the life of the
service (``async with`` it, or ``aclose()``): a broker that is down when the
service starts does not stop /health or the status routes from answering.
Whatever fails before the event is published leaves no stored file behind.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import AsyncIterator

from soulprint.models.events import ImportRequested
from soulprint.models.jobs import SUPERSEDED, Job
from soulprint.services.db import Database
from soulprint.services.db.uploads import DuplicateImport
from soulprint.services.kafka import BrokerError, ImportPublisher
from soulprint.services.metrics import METRICS
from soulprint.services.storage import Storage, Stored
from soulprint.settings import Settings


class ImportService:
    def __init__(self, settings: Settings, db: Database, storage: Storage) -> None:
        self.settings = settings
        self.db = db
        self.storage = storage
        self._publisher: ImportPublisher | None = None
        self._opening = asyncio.Lock()

    async def __aenter__(self) -> "ImportService":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._publisher is not None:
            publisher, self._publisher = self._publisher, None
            await publisher.__aexit__(None, None, None)

    async def submit(self, user_id: str, chunks: AsyncIterator[bytes], *, way: str,
                     job_id: str | None = None) -> Job:
        """Stream ``chunks`` into storage (TooLarge, NotAnExport, StorageError), then ``submit_stored``."""
        job_id = job_id or str(uuid.uuid4())
        stored = await self.storage.save(user_id, f"{job_id}/export", _counted(chunks, way),
                                         limit=self.settings.upload.max_upload_bytes)
        return await self.submit_stored(user_id, stored, way=way, job_id=job_id)

    async def submit_stored(self, user_id: str, stored: Stored, *, way: str, job_id: str | None = None) -> Job:
        """The import of an export already in storage. DuplicateImport (same person and SHA-256, still
        running) or BrokerError remove the stored file; ``way`` says how it came (raw, multipart, tus, cli)."""
        job_id = job_id or str(uuid.uuid4())
        try:
            publisher = await self._open()  # before the job is written: no queued job nobody was told of
            stale = await self.db.uploads.create_job(job_id, user_id, stored.uri, sha256=stored.sha256,
                                                     size=stored.size, stale_s=self.settings.upload.stale_s)
        except BaseException:
            await asyncio.shield(self.storage.delete(stored.uri))
            raise
        for old in stale:
            await self.db.jobs.fail(old, SUPERSEDED, f"superseded by the newer import {job_id} of the same export")
        try:
            await publisher.publish(ImportRequested(job_id=job_id, user_id=user_id, source_uri=stored.uri,
                                                    requested_at=time.time()))
        except Exception as exc:
            await self.db.jobs.fail(job_id, "infrastructure", f"could not publish the import: {exc}")
            await self.storage.delete(stored.uri)
            raise BrokerError(f"could not publish the import to {self.settings.kafka_bootstrap}") from exc
        return await self.db.jobs.get(job_id)

    async def _open(self) -> ImportPublisher:
        async with self._opening:
            if self._publisher is None:
                self._publisher = await ImportPublisher(self.settings).__aenter__()
            return self._publisher


async def _counted(chunks: AsyncIterator[bytes], way: str) -> AsyncIterator[bytes]:
    """The bytes as they arrive, counted in soulprint_upload_bytes{way}."""
    counter = METRICS.upload_bytes.labels(way=way)
    async for chunk in chunks:
        counter.inc(len(chunk))
        yield chunk


__all__ = ["DuplicateImport", "ImportService"]
