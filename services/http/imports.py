"""The upload routes: POST /v1/imports, GET /v1/imports/{job_id}, GET /v1/imports/{job_id}/events.

POST takes the export as the raw body (application/zip, application/json,
application/octet-stream) or as the ``file`` field of a multipart/form-data
body, and streams it into storage chunk by chunk as it arrives: the multipart
body goes through python-multipart's push parser, never ``request.form()``,
so no part of the export is held whole in memory or spooled to a temporary
file. A Content-Length over the limit is refused (413) before a byte is read;
a body that turns out larger is refused while it is read.

The events route polls the job's row (every POLL_S) rather than LISTENing:
a poll is one indexed read per open stream and needs no connection of its
own, while LISTEN holds a pooled connection per stream (or a fan-out of our
own) for as long as a browser keeps the page open; a status that changes a
few times a second at most is well served by the poll. The event id is the
row's revision (migration 0014), so a reconnect with Last-Event-ID gets the
status again only if it changed since.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, AsyncIterator

import orjson
from python_multipart.multipart import MultipartParser, parse_options_header
from sse_starlette.sse import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from soulprint.models.query import Unavailable
from soulprint.reporting import job_json
from soulprint.services.db.uploads import DuplicateImport
from soulprint.services.http.errors import BadRequest, BodyTooLarge, Conflict, NotFound, UnsupportedMedia
from soulprint.services.http.inputs import JSON, authenticate
from soulprint.services.kafka import BrokerError
from soulprint.services.storage import NotAnExport, StorageError, TooLarge

if TYPE_CHECKING:
    from soulprint.models.jobs import Job
    from soulprint.services.http.context import ApiContext

RAW_TYPES = ("application/zip", "application/json", "application/octet-stream", "application/x-zip-compressed")
POLL_S = 0.5  # the events route's look at the row
HEARTBEAT_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
MULTIPART_OVERHEAD = 1 << 20  # boundaries, part headers and small fields around the file, at most


def routes(ctx: "ApiContext") -> list[BaseRoute]:
    if ctx.imports is None:
        return []
    r = ImportRoutes(ctx)
    return [
        Route("/v1/imports", r.create, methods=["POST"]),
        Route("/v1/imports/{job_id}", r.status, methods=["GET"]),
        Route("/v1/imports/{job_id}/events", r.events, methods=["GET"]),
    ]


class ImportRoutes:
    def __init__(self, ctx: "ApiContext") -> None:
        self.ctx = ctx
        self.limit = ctx.settings.upload.max_upload_bytes

    async def _person(self, request: Request) -> str:
        principal = await authenticate(request, self.ctx.auth)
        return principal.acting_for(request.query_params.get("user"))

    async def create(self, request: Request) -> Response:
        person = await self._person(request)  # before a byte of the body is read
        media, options = parse_options_header(request.headers.get("content-type", "application/octet-stream"))
        media = media.decode("latin-1").lower()
        multipart = media == "multipart/form-data"
        if not multipart and media not in RAW_TYPES:
            raise UnsupportedMedia(f"Content-Type {media} is not an export: send application/zip, "
                                   "application/json or application/octet-stream, or multipart/form-data "
                                   "with the export as the field `file`")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit + (MULTIPART_OVERHEAD if multipart else 0):
            raise BodyTooLarge(f"the export is larger than {self.limit} bytes")
        if multipart:
            boundary = options.get(b"boundary")
            if not boundary:
                raise BadRequest("a multipart/form-data body needs a boundary in its Content-Type")
            chunks, way = multipart_file(request, boundary, "file", self.limit + MULTIPART_OVERHEAD), "multipart"
        else:
            chunks, way = request.stream(), "raw"
        try:
            job = await self.ctx.imports.submit(person, chunks, way=way)
        except TooLarge as exc:
            raise BodyTooLarge(str(exc)) from None
        except NotAnExport as exc:
            raise UnsupportedMedia(str(exc)) from None
        except DuplicateImport as exc:
            raise Conflict(str(exc), extra={"job_id": exc.job_id}) from None
        except (StorageError, BrokerError) as exc:
            raise Unavailable(str(exc)) from None
        status_url = f"/v1/imports/{job.job_id}"
        return JSON({"job_id": job.job_id, "status_url": status_url, "events_url": f"{status_url}/events",
                     "sha256": job.sha256, "bytes": job.export_bytes},
                    status_code=202, headers={"Location": status_url})

    async def _job(self, request: Request, person: str) -> tuple[int, "Job"]:
        found = await self.ctx.db.uploads.status(request.path_params["job_id"], person)
        if found is None:
            raise NotFound(f"no import {request.path_params['job_id']}")
        return found

    async def _json(self, job: "Job") -> dict:
        return job_json(job, {"llm_usage": await self.ctx.db.usage_for_job(job.job_id)})

    async def status(self, request: Request) -> Response:
        person = await self._person(request)
        revision, job = await self._job(request, person)
        return JSON(await self._json(job), headers={"ETag": f'"{revision}"'})

    async def events(self, request: Request) -> Response:
        person = await self._person(request)
        await self._job(request, person)  # 404 now, not an empty stream
        last = request.headers.get("last-event-id", "").strip()
        return EventSourceResponse(self._changes(request, person, int(last) if last.isdigit() else 0),
                                   ping=HEARTBEAT_S, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _changes(self, request: Request, person: str, last: int) -> AsyncIterator[ServerSentEvent]:
        """Each new revision of the row as one event, until the job is finished (or gone: erased)."""
        while True:
            found = await self.ctx.db.uploads.status(request.path_params["job_id"], person)
            if found is None:
                return
            revision, job = found
            if revision > last:
                last = revision
                yield ServerSentEvent(orjson.dumps(await self._json(job)).decode(), event="status", id=str(revision))
            if job.finished:
                return
            await asyncio.sleep(POLL_S)


async def multipart_file(request: Request, boundary: bytes, field: str, limit: int) -> AsyncIterator[bytes]:
    """The bytes of the form field ``field`` of a multipart body, as they arrive (python-multipart's push
    parser, fed chunk by chunk); the rest of the body is not read once that part ends. BadRequest when the
    body has no such field; BodyTooLarge past ``limit`` raw bytes."""
    out: list[bytes] = []
    state = {"headers": {}, "name": None, "inside": False, "done": False, "field": b"", "value": b""}

    def on_header_field(data, start, end):
        state["field"] += data[start:end]

    def on_header_value(data, start, end):
        state["value"] += data[start:end]

    def on_header_end():
        state["headers"][state["field"].lower()] = state["value"]
        state["field"] = state["value"] = b""

    def on_headers_finished():
        _, params = parse_options_header(state["headers"].get(b"content-disposition", b""))
        state["inside"] = params.get(b"name") == field.encode() and not state["done"]

    def on_part_data(data, start, end):
        if state["inside"]:
            out.append(bytes(data[start:end]))

    def on_part_end():
        if state["inside"]:
            state["inside"], state["done"] = False, True
        state["headers"] = {}

    parser = MultipartParser(boundary, {
        "on_header_field": on_header_field, "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data, "on_part_end": on_part_end,
    })
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise BodyTooLarge(f"the request body is larger than {limit} bytes")
        try:
            parser.write(chunk)
        except Exception as exc:  # python-multipart's MultipartParseError and kin: a malformed body
            raise BadRequest(f"malformed multipart body: {' '.join(str(exc).split())}") from None
        for piece in out:
            yield piece
        out.clear()
        if state["done"]:
            return
    if not state["done"]:
        raise BadRequest(f"the multipart body has no complete field `{field}`")
