"""Resumable uploads: the tus 1.0.0 protocol at /v1/uploads (core, creation, creation-with-upload,
expiration, checksum, termination).

A large export over a flaky connection is sent in PATCHes; whatever part of a
PATCH arrived before the connection broke is kept, and HEAD says where to go
on. The bytes go to a part file, ``<data dir>/tus/<upload id>``, as they
arrive (never held in memory) and are fsynced before the offset in
``tus_uploads`` says they are there. The row is locked for the whole of a
PATCH (services/db/resumable.py), so one upload takes one PATCH at a time.
When the offset reaches Upload-Length the file goes to storage and into the
pipeline (``ImportService.submit_stored``), and the answer names the job
(``Soulprint-Job-Id``), as does every HEAD after.

The person is the token's (``?user=`` for the operator); another person's
upload is not found. An expired upload answers 410 and loses its bytes;
its row stays for ``upload_gone_kept_s`` more, so a client coming back
late still hears 410, then goes and the upload answers 404.
``ResumableUploads.sweep`` does both (on every creation, and for the
reconciler through ``sweep_expired``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import uuid
from dataclasses import dataclass
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator
from urllib.parse import quote

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from soulprint.services.db.resumable import Busy, Patch, Upload
from soulprint.services.http.errors import (BadRequest, BodyTooLarge, Conflict, Gone, NotFound,
                                            UnsupportedMedia, error_response)
from soulprint.services.http.inputs import authenticate
from soulprint.services.imports import DuplicateImport
from soulprint.services.metrics import METRICS
from soulprint.services.storage import NotAnExport, sniff

if TYPE_CHECKING:
    from soulprint.services.db import Database
    from soulprint.services.http.context import ApiContext
    from soulprint.settings import Settings

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,expiration,checksum,termination"
CHECKSUMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512, "md5": hashlib.md5}
OFFSET_STREAM = "application/offset+octet-stream"
# The job a finished upload starts is named after the upload (uuid5 in this namespace).
JOB_IDS = uuid.UUID("6f1c3c1e-4b7a-5d2e-9a57-7475732d6a6f")
# A PATCH whose body stops arriving for this long ends there, keeping what came (the client resumes).
IDLE_S = 60.0
CHECKSUM_MISMATCH = 460  # tus's own status: the PATCH's bytes do not match its Upload-Checksum


class TusHeaders:
    """Every response of the tus routes carries Tus-Resumable; a request other than OPTIONS must carry
    ``Tus-Resumable: 1.0.0`` (else 412 naming the version spoken), checked before anything else.

    A route middleware: it wraps the route's own exception handling, so error answers get the header too."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        async def send_tus(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"tus-resumable", TUS_VERSION.encode())]
            await send(message)

        if scope["method"] != "OPTIONS" and Headers(scope=scope).get("tus-resumable") != TUS_VERSION:
            response = error_response(412, f"this server speaks tus {TUS_VERSION}: send Tus-Resumable: "
                                           f"{TUS_VERSION}", {"Tus-Version": TUS_VERSION})
            await response(scope, receive, send_tus)
            return
        await self.app(scope, receive, send_tus)


class Overrun(Exception):
    """A PATCH carried more bytes than the upload has left."""


class ChecksumMismatch(Exception):
    """The PATCH's bytes do not match its Upload-Checksum (answered 460; the offset did not move)."""


class PartFiles:
    """The bytes of unfinished uploads: one file each, named by the upload id, in one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, upload_id: str) -> Path:
        return self.root / upload_id

    def create(self, upload_id: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.path(upload_id).touch()

    async def append(self, upload_id: str, offset: int, chunks: AsyncIterator[bytes], *, limit: int,
                     hasher) -> tuple[int, bool]:
        """Write ``chunks`` at ``offset`` (cutting off whatever a PATCH that died left past it), at most
        ``limit`` bytes (Overrun past it, the file cut back); fsynced. (bytes written, client went away)."""
        fd = os.open(self.path(upload_id), os.O_WRONLY | os.O_CREAT, 0o600)
        written, interrupted = 0, False
        try:
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
            try:
                async for chunk in _until_idle(chunks, IDLE_S):
                    if written + len(chunk) > limit:
                        os.ftruncate(fd, offset)
                        raise Overrun()
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                    written += len(chunk)
                    if hasher is not None:
                        hasher.update(chunk)
                    METRICS.upload_bytes.labels(way="tus").inc(len(chunk))
            except (ClientDisconnect, TimeoutError):
                interrupted = True
            await asyncio.to_thread(os.fsync, fd)
        finally:
            os.close(fd)
        return written, interrupted

    def head(self, upload_id: str, size: int) -> bytes:
        with open(self.path(upload_id), "rb") as f:
            return f.read(size)

    def cut(self, upload_id: str, offset: int) -> None:
        os.truncate(self.path(upload_id), offset)

    def remove(self, upload_id: str) -> None:
        self.path(upload_id).unlink(missing_ok=True)

    def ids(self) -> list[str]:
        return [p.name for p in self.root.iterdir()] if self.root.is_dir() else []


async def _until_idle(chunks: AsyncIterator[bytes], idle_s: float) -> AsyncIterator[bytes]:
    """The chunks, until one takes longer than ``idle_s`` to come (TimeoutError): a client that stalls
    mid-PATCH is treated as gone instead of holding its upload's lock for ever."""
    it = aiter(chunks)
    while True:
        try:
            chunk = await asyncio.wait_for(anext(it), idle_s)
        except StopAsyncIteration:
            return
        yield chunk


class ResumableUploads:
    """The uploads' rows and part files together: creation, the sweep, a person's part files at erasure."""

    def __init__(self, db: "Database", settings: "Settings") -> None:
        self.rows = db.resumable
        self.files = PartFiles(settings.data_dir / "tus")
        self.expires_s = settings.upload_expires_s
        self.gone_kept_s = settings.upload_gone_kept_s
        self.max_bytes = settings.upload.max_upload_bytes

    async def create(self, user_id: str, length: int, metadata: dict[str, str]) -> Upload:
        await self.sweep()
        upload = await self.rows.create(uuid.uuid4().hex, user_id, length, metadata, self.expires_s)
        self.files.create(upload.upload_id)  # after the row: a part file without a row is always an orphan
        return upload

    async def sweep(self) -> int:
        """Remove the bytes of expired uploads, the rows of those expired longer than the 410 window,
        and part files whose row is gone (a termination or an erasure that stopped half-way); how many
        uploads' bytes or rows were removed."""
        deleted, kept = await self.rows.sweep_expired(self.gone_kept_s)
        on_disk = self.files.ids()
        gone = set(deleted) | (set(kept) & set(on_disk))
        gone |= set(on_disk) - await self.rows.existing(on_disk)
        for upload_id in gone:
            self.files.remove(upload_id)
        return len(gone)

    async def ids_of(self, user_id: str) -> list[str]:
        return await self.rows.ids_of(user_id)

    def remove_parts(self, upload_ids: list[str]) -> int:
        """The part files of these uploads removed (erasure, after their rows are gone); how many were there."""
        removed = 0
        for upload_id in upload_ids:
            removed += self.files.path(upload_id).exists()
            self.files.remove(upload_id)
        return removed


async def sweep_expired(db: "Database", settings: "Settings") -> int:
    """The sweep, for the reconciler's timer: expired uploads and orphaned part files removed."""
    return await ResumableUploads(db, settings).sweep()


@dataclass(frozen=True)
class Checksum:
    algorithm: str
    digest: bytes

    def hasher(self):
        return CHECKSUMS[self.algorithm]()


def parse_checksum(raw: str | None) -> Checksum | None:
    """``Upload-Checksum: <algorithm> <base64 digest>``; BadRequest for an unknown algorithm or a bad digest."""
    if raw is None:
        return None
    algorithm, _, encoded = raw.strip().partition(" ")
    if algorithm not in CHECKSUMS:
        raise BadRequest(f"Upload-Checksum: unsupported algorithm {algorithm!r} (supported: {', '.join(CHECKSUMS)})")
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("Upload-Checksum: the digest is not base64") from None
    if len(digest) != CHECKSUMS[algorithm]().digest_size:
        raise BadRequest(f"Upload-Checksum: not a {algorithm} digest")
    return Checksum(algorithm, digest)


def parse_metadata(raw: str | None) -> dict[str, str]:
    """``Upload-Metadata: key base64value,key2,...`` decoded (values as UTF-8 text); BadRequest if malformed."""
    metadata: dict[str, str] = {}
    for pair in (raw or "").split(","):
        if not pair.strip():
            continue
        key, _, encoded = pair.strip().partition(" ")
        if key in metadata or " " in encoded.strip():
            raise BadRequest(f"Upload-Metadata: {'a repeated key' if key in metadata else 'a malformed pair'}"
                             f" ({key!r})")
        try:
            metadata[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise BadRequest(f"Upload-Metadata: the value of {key!r} is not base64 of UTF-8 text") from None
    return metadata


def encode_metadata(metadata: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" if v else k for k, v in metadata.items())


def _integer(request: Request, header: str) -> int:
    raw = request.headers.get(header)
    if raw is None:
        raise BadRequest(f"the {header} header is required")
    if not raw.strip().isdigit():
        raise BadRequest(f"{header} must be a non-negative integer, got {raw!r}")
    return int(raw)


def _mismatch(exc: ChecksumMismatch, headers: dict[str, str]) -> Response:
    return error_response(CHECKSUM_MISMATCH, str(exc), headers)


def _expires(upload: Upload) -> str:
    return format_datetime(upload.expires_at, usegmt=True)  # RFC 7231's IMF-fixdate


class TusRoutes:
    def __init__(self, ctx: "ApiContext", uploads: ResumableUploads) -> None:
        self.auth = ctx.auth
        self.imports = ctx.imports
        self.jobs = ctx.db.jobs
        self.uploads = uploads
        self.files = uploads.files

    def discovery(self) -> dict[str, str]:
        return {"Tus-Version": TUS_VERSION, "Tus-Extension": EXTENSIONS,
                "Tus-Max-Size": str(self.uploads.max_bytes), "Tus-Checksum-Algorithm": ",".join(CHECKSUMS)}

    async def _person(self, request: Request) -> tuple[str, bool]:
        principal = await authenticate(request, self.auth)
        return principal.acting_for(request.query_params.get("user")), principal.admin

    def _live(self, upload: Upload | None) -> Upload:
        """The upload, if it is the person's and alive: 404 for none of theirs, 410 (its bytes removed) once
        expired."""
        if upload is None:
            raise NotFound("no such upload")
        if upload.expired:
            self.files.remove(upload.upload_id)
            raise Gone(f"the upload expired at {_expires(upload)}")
        return upload

    # -- the routes -----------------------------------------------------------------

    async def options(self, request: Request) -> Response:
        return Response(status_code=204, headers=self.discovery())

    async def create(self, request: Request) -> Response:
        user, admin = await self._person(request)
        if "upload-defer-length" in request.headers:
            raise BadRequest("Upload-Defer-Length is not supported: send Upload-Length")
        length = _integer(request, "upload-length")
        if length == 0:
            raise BadRequest("Upload-Length must be at least 1: an export is never empty")
        if length > self.uploads.max_bytes:
            raise BodyTooLarge(f"the upload is larger than {self.uploads.max_bytes} bytes",
                               headers={"Tus-Max-Size": str(self.uploads.max_bytes)})
        metadata = parse_metadata(request.headers.get("upload-metadata"))
        with_upload = request.headers.get("content-type", "").split(";")[0].strip() == OFFSET_STREAM
        checksum = parse_checksum(request.headers.get("upload-checksum")) if with_upload else None
        upload = await self.uploads.create(user, length, metadata)
        location = f"/v1/uploads/{upload.upload_id}" + (f"?user={quote(user, safe='')}" if admin else "")
        headers = {"Location": location, "Upload-Expires": _expires(upload)}
        if with_upload:  # creation-with-upload: the body is the first PATCH
            try:
                headers.update(await self._patch(request, user, upload.upload_id, 0, checksum))
            except ChecksumMismatch as exc:
                return _mismatch(exc, {**headers, "Upload-Offset": "0"})
        return Response(status_code=201, headers=headers)

    async def head(self, request: Request) -> Response:
        user, _ = await self._person(request)
        upload = self._live(await self.uploads.rows.get(request.path_params["upload_id"], user))
        headers = {"Upload-Offset": str(upload.offset), "Upload-Length": str(upload.length),
                   "Cache-Control": "no-store", "Upload-Expires": _expires(upload)}
        if upload.metadata:
            headers["Upload-Metadata"] = encode_metadata(upload.metadata)
        if upload.job_id:
            headers["Soulprint-Job-Id"] = upload.job_id
        return Response(status_code=200, headers=headers)

    async def patch(self, request: Request) -> Response:
        user, _ = await self._person(request)
        if request.headers.get("content-type", "").split(";")[0].strip() != OFFSET_STREAM:
            raise UnsupportedMedia(f"a PATCH carries Content-Type: {OFFSET_STREAM}")
        offset = _integer(request, "upload-offset")
        checksum = parse_checksum(request.headers.get("upload-checksum"))
        try:
            headers = await self._patch(request, user, request.path_params["upload_id"], offset, checksum)
        except ChecksumMismatch as exc:
            return _mismatch(exc, {"Upload-Offset": str(offset)})
        return Response(status_code=204, headers=headers)

    async def delete(self, request: Request) -> Response:
        user, _ = await self._person(request)
        upload_id = request.path_params["upload_id"]
        try:
            found = await self.uploads.rows.delete(upload_id, user)
        except Busy:
            raise Conflict("a PATCH of this upload is in progress") from None
        if not found:
            raise NotFound("no such upload")
        self.files.remove(upload_id)
        return Response(status_code=204)

    # -- receiving bytes ------------------------------------------------------------

    async def _patch(self, request: Request, user: str, upload_id: str, offset: int,
                     checksum: Checksum | None) -> dict[str, str]:
        """Receive one PATCH's body into the upload, holding its row; the answer's headers.

        Only the ``Patch`` writes decide what the row says; they commit when the block ends, however it ends."""
        try:
            async with self.uploads.rows.patching(upload_id, user) as patch:
                upload = self._live(patch.upload if patch is not None else None)
                if upload.complete and offset == upload.length:  # a retry of the PATCH that finished it
                    return {"Upload-Offset": str(upload.length), "Soulprint-Job-Id": upload.job_id}
                if offset != upload.offset or upload.complete:
                    raise Conflict(f"Upload-Offset is {offset} but the upload is at {upload.offset}",
                                   headers={"Upload-Offset": str(upload.offset)})
                return await self._receive(request, patch, checksum)
        except Busy:
            raise Conflict("another PATCH of this upload is in progress") from None

    async def _receive(self, request: Request, patch: Patch, checksum: Checksum | None) -> dict[str, str]:
        upload = patch.upload
        start, room = upload.offset, upload.length - upload.offset
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > room:
            raise BodyTooLarge(f"the PATCH carries {declared} bytes but the upload has {room} left")
        hasher = checksum.hasher() if checksum else None
        try:
            written, interrupted = await self.files.append(upload.upload_id, start, request.stream(), limit=room,
                                                           hasher=hasher)
        except Overrun:
            raise BodyTooLarge(f"the PATCH carries more than the {room} bytes the upload has left") from None
        if checksum is not None and (interrupted or hasher.digest() != checksum.digest):
            # Bytes that cannot be verified are not kept: the offset stays where it was.
            self.files.cut(upload.upload_id, start)
            raise ChecksumMismatch(f"the PATCH's bytes do not match its {checksum.algorithm} checksum"
                                   if not interrupted else "the PATCH ended before its checksum could be checked")
        if start == 0 and written:
            try:
                sniff(self.files.head(upload.upload_id, written), final=written == upload.length)
            except NotAnExport as exc:
                self.files.cut(upload.upload_id, 0)
                raise UnsupportedMedia(str(exc)) from None
        offset = start + written
        if offset < upload.length:
            await patch.advance(offset)
            return {"Upload-Offset": str(offset), "Upload-Expires": _expires(upload)}
        return await self._complete(patch)

    async def _complete(self, patch: Patch) -> dict[str, str]:
        """The last byte is in: the file to storage and into the pipeline; the upload names its job.

        The job id follows from the upload's, so a completion that died before the row said so (the client
        sends its last PATCH again) finds its job instead of making a second one."""
        upload = patch.upload
        job_id = str(uuid.uuid5(JOB_IDS, upload.upload_id))
        if await self.jobs.get(job_id) is None:
            try:
                stored = await self.imports.storage.save_file(upload.user_id, f"{job_id}/export",
                                                              self.files.path(upload.upload_id))
                await self.imports.submit_stored(upload.user_id, stored, way="tus", job_id=job_id)
            except (DuplicateImport, NotAnExport) as exc:
                # Finished bytes that will never be imported: the upload ends with the refusal.
                await patch.remove()
                self.files.remove(upload.upload_id)
                if isinstance(exc, NotAnExport):
                    raise UnsupportedMedia(str(exc)) from None
                raise Conflict("this export is already being imported", extra={"job_id": exc.job_id}) from None
        await patch.complete(job_id)
        self.files.remove(upload.upload_id)
        return {"Upload-Offset": str(upload.length), "Soulprint-Job-Id": job_id}


def routes(ctx: "ApiContext") -> list[BaseRoute]:
    uploads = ctx.uploads or ResumableUploads(ctx.db, ctx.settings)
    r = TusRoutes(ctx, uploads)
    tus = [Middleware(TusHeaders)]
    return [
        Route("/v1/uploads", r.options, methods=["OPTIONS"], middleware=tus),
        Route("/v1/uploads", r.create, methods=["POST"], middleware=tus),
        Route("/v1/uploads/{upload_id}", r.options, methods=["OPTIONS"], middleware=tus),
        Route("/v1/uploads/{upload_id}", r.head, methods=["HEAD"], middleware=tus),
        Route("/v1/uploads/{upload_id}", r.patch, methods=["PATCH"], middleware=tus),
        Route("/v1/uploads/{upload_id}", r.delete, methods=["DELETE"], middleware=tus),
    ]
