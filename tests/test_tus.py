"""Resumable uploads (tus 1.0.0 at /v1/uploads) over real sockets, on the app `soulprint serve` builds.

The shipped sample goes up in several PATCHes with checksums and is imported
to `complete`; an upload whose PATCH loses its connection half-way keeps what
arrived, tells HEAD, and resumes from there. Then each refusal: a checksum
that does not match (460, the offset unmoved), a wrong offset (409), a second
PATCH beside a running one (409), an expired upload (410), a terminated one,
another person's (404), no Tus-Resumable (412), and bad headers.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from pathlib import Path

import httpx
import pytest

from soulprint.runtime import build_api
from soulprint.services.auth import Authenticator
from soulprint.services.http.errors import BadRequest
from soulprint.services.http.server import ApiServer, bind
from soulprint.services.http import tus
from soulprint.services.http.tus import encode_metadata, parse_checksum, parse_metadata, sweep_expired
from soulprint.services.metrics import METRICS
from support.waiting import wait_for_job, wait_until

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "sample-export.zip"
ADMIN = "operator-token-for-the-tus-tests-0123456789"
TIMEOUT = httpx.Timeout(60.0)
TUS = {"Tus-Resumable": "1.0.0"}
OFFSET_STREAM = {"Content-Type": "application/offset+octet-stream"}
EXPORT = SAMPLE.read_bytes()


@pytest.fixture(scope="module")
async def api(runtime):
    """The upload service as `soulprint serve` builds it (runtime.build_api), with the tests' operator token."""
    rt = dataclasses.replace(runtime, auth=Authenticator(runtime.db.tokens, ADMIN))
    server = ApiServer(build_api(rt, None), bind("127.0.0.1", 0))
    await server.start()
    yield server.url
    await server.stop()


@pytest.fixture
async def person(runtime, user_id):
    _, token = await runtime.db.tokens.create(user_id, "test_tus")
    return user_id, token


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def tus_client(api: str, token: str | None = None) -> httpx.AsyncClient:
    headers = {**TUS, **(bearer(token) if token else {})}
    return httpx.AsyncClient(base_url=api, headers=headers, timeout=TIMEOUT)


async def create(client: httpx.AsyncClient, length: int = len(EXPORT), **headers) -> str:
    r = await client.post("/v1/uploads", headers={"Upload-Length": str(length), **headers})
    assert r.status_code == 201, r.text
    assert r.headers["tus-resumable"] == "1.0.0"
    return r.headers["location"]


def part_file(runtime, location: str):
    return runtime.settings.data_dir / "tus" / urlsplit(location).path.rsplit("/", 1)[1]


def checksum(algorithm: str, data: bytes) -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


async def patch(client: httpx.AsyncClient, location: str, offset: int, data: bytes, **headers) -> httpx.Response:
    return await client.patch(location, content=data, headers={**OFFSET_STREAM, "Upload-Offset": str(offset),
                                                               **headers})


async def expire(runtime, upload_id: str, seconds_ago: float) -> None:
    await runtime.db.pool.execute(
        "UPDATE tus_uploads SET expires_at = now() - make_interval(secs => $2) WHERE upload_id = $1",
        upload_id, float(seconds_ago))


async def offset_of(client: httpx.AsyncClient, location: str) -> int:
    r = await client.head(location)
    assert r.status_code == 200, r.status_code
    return int(r.headers["upload-offset"])


class HalfPatch:
    """A PATCH over a raw socket that announces ``data`` but sends only ``sent`` bytes of it, then (on
    ``drop``) closes the connection: a client that went away mid-body."""

    def __init__(self, api: str, token: str, location: str, offset: int, data: bytes, sent: int) -> None:
        self.api, self.token, self.location = api, token, location
        self.offset, self.data, self.sent = offset, data, sent
        self.writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        url = urlsplit(self.api)
        _, self.writer = await asyncio.open_connection(url.hostname, url.port)
        head = (f"PATCH {self.location} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {self.token}\r\n"
                f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Upload-Offset: {self.offset}\r\nContent-Length: {len(self.data)}\r\n\r\n")
        self.writer.write(head.encode() + self.data[:self.sent])
        await self.writer.drain()

    async def drop(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def file_size(path) -> int:
    return path.stat().st_size if path.exists() else -1


# -- the protocol's parts, without a server -------------------------------------------------

def test_metadata_round_trips_and_refuses_what_is_not_base64():
    raw = encode_metadata({"filename": "my export.zip", "filetype": "application/zip", "empty": ""})
    assert parse_metadata(raw) == {"filename": "my export.zip", "filetype": "application/zip", "empty": ""}
    assert parse_metadata(None) == {} and parse_metadata("") == {}
    for bad in ("filename not-base64!", "a YQ==,a YQ==", "a YQ== YQ=="):
        with pytest.raises(BadRequest):
            parse_metadata(bad)


def test_checksums_name_a_supported_algorithm_and_a_digest_of_its_size():
    assert parse_checksum(checksum("sha1", b"x")).digest == hashlib.sha1(b"x").digest()
    assert parse_checksum(None) is None
    for bad in ("crc32 AAAA", "sha256 not base64", f"sha256 {base64.b64encode(b'short').decode()}"):
        with pytest.raises(BadRequest):
            parse_checksum(bad)


# -- the whole flow ------------------------------------------------------------------------------

async def test_options_names_the_version_extensions_size_and_checksums(api, runtime):
    async with httpx.AsyncClient(base_url=api) as client:  # discovery needs neither token nor version
        r = await client.options("/v1/uploads")
    assert r.status_code == 204
    assert r.headers["tus-resumable"] == "1.0.0" and r.headers["tus-version"] == "1.0.0"
    assert {"creation", "expiration", "checksum", "termination"} <= set(r.headers["tus-extension"].split(","))
    assert {"sha1", "sha256"} <= set(r.headers["tus-checksum-algorithm"].split(","))
    assert int(r.headers["tus-max-size"]) == runtime.settings.upload.max_upload_bytes


async def test_the_sample_uploaded_in_several_patches_is_imported(api, runtime, person):
    user, token = person
    before = METRICS.upload_bytes.labels(way="tus")._value.get()
    async with tus_client(api, token) as client:
        location = await create(client, **{"Upload-Metadata": encode_metadata({"filename": "export.zip"})})
        assert location.startswith("/v1/uploads/")
        head = await client.head(location)
        assert head.status_code == 200
        assert (head.headers["upload-offset"], head.headers["upload-length"]) == ("0", str(len(EXPORT)))
        assert head.headers["cache-control"] == "no-store"
        assert parse_metadata(head.headers["upload-metadata"]) == {"filename": "export.zip"}
        expires = parsedate_to_datetime(head.headers["upload-expires"])
        assert abs(expires - datetime.now(timezone.utc) - timedelta(seconds=runtime.settings.upload_expires_s)) \
            < timedelta(minutes=5)

        piece = len(EXPORT) // 4 + 1
        offset, answers = 0, []
        while offset < len(EXPORT):
            data = EXPORT[offset:offset + piece]
            r = await patch(client, location, offset, data, **{"Upload-Checksum": checksum("sha256", data)})
            assert r.status_code == 204, r.text
            offset += len(data)
            assert int(r.headers["upload-offset"]) == offset
            answers.append(r)
        assert len(answers) == 4
        assert all("soulprint-job-id" not in r.headers for r in answers[:-1])
        job_id = answers[-1].headers["soulprint-job-id"]
        head = await client.head(location)
        assert head.headers["soulprint-job-id"] == job_id and head.headers["upload-offset"] == str(len(EXPORT))
        # A retry of the PATCH that finished it is answered again, not imported twice.
        again = await patch(client, location, len(EXPORT), b"")
        assert again.status_code == 204 and again.headers["soulprint-job-id"] == job_id

    assert not part_file(runtime, location).exists()
    assert METRICS.upload_bytes.labels(way="tus")._value.get() - before >= len(EXPORT)
    job = await wait_for_job(runtime.db, job_id, limit_s=180)
    assert (job.status, job.user_id) == ("complete", user), job.error


async def test_an_upload_interrupted_half_way_resumes_from_what_arrived(api, runtime, person):
    user, token = person
    half = len(EXPORT) // 2
    async with tus_client(api, token) as client:
        location = await create(client)
        cut = HalfPatch(api, token, location, 0, EXPORT, half)
        await cut.start()
        await wait_until(lambda: file_size(part_file(runtime, location)), lambda size: size == half,
                         what="the first half on the server's disk")
        await cut.drop()
        # The server keeps what was written before the connection went: HEAD says where to go on.
        resume_at = await wait_until(lambda: offset_of(client, location), lambda offset: offset == half,
                                     what="the offset to reach the half that arrived")
        r = await patch(client, location, resume_at, EXPORT[resume_at:],
                        **{"Upload-Checksum": checksum("sha1", EXPORT[resume_at:])})
        assert r.status_code == 204, r.text
        assert r.headers["upload-offset"] == str(len(EXPORT))
        job_id = r.headers["soulprint-job-id"]
    job = await wait_for_job(runtime.db, job_id, limit_s=180)
    assert (job.status, job.user_id) == ("complete", user), job.error


async def test_a_patch_that_stalls_mid_body_ends_keeping_what_arrived(api, runtime, person, monkeypatch):
    _, token = person
    monkeypatch.setattr(tus, "IDLE_S", 0.5)  # the server's patience with a body that stops coming
    async with tus_client(api, token) as client:
        location = await create(client)
        stalled = HalfPatch(api, token, location, 0, EXPORT, 3000)
        await stalled.start()  # and then sends nothing more, the connection open
        await wait_until(lambda: offset_of(client, location), lambda offset: offset == 3000,
                         what="the stalled PATCH to end with the bytes it brought")
        await stalled.drop()
        assert (await patch(client, location, 3000, EXPORT[3000:4000])).status_code == 204


async def test_creation_with_upload_takes_the_first_bytes_in_the_post(api, runtime, person):
    _, token = person
    async with tus_client(api, token) as client:
        r = await client.post("/v1/uploads", content=EXPORT[:1000],
                              headers={"Upload-Length": str(len(EXPORT)), **OFFSET_STREAM})
        assert r.status_code == 201, r.text
        assert r.headers["upload-offset"] == "1000"
        assert await offset_of(client, r.headers["location"]) == 1000
        assert (await client.delete(r.headers["location"])).status_code == 204


# -- refusals ------------------------------------------------------------------------------------

async def test_a_checksum_mismatch_is_460_and_the_offset_does_not_move(api, runtime, person):
    _, token = person
    async with tus_client(api, token) as client:
        location = await create(client)
        r = await patch(client, location, 0, EXPORT[:5000], **{"Upload-Checksum": checksum("sha1", b"other")})
        assert r.status_code == 460, r.text
        assert r.headers["tus-resumable"] == "1.0.0"
        assert r.json()["error"]["message"]
        assert await offset_of(client, location) == 0
        assert part_file(runtime, location).stat().st_size == 0  # the PATCH's bytes were discarded
        r = await patch(client, location, 0, EXPORT[:5000], **{"Upload-Checksum": checksum("sha256", b"x")})
        assert r.status_code == 460
        r = await patch(client, location, 0, EXPORT[:5000], **{"Upload-Checksum": "crc32 AAAAAA=="})
        assert r.status_code == 400  # an algorithm the server does not offer
        r = await patch(client, location, 0, EXPORT[:5000], **{"Upload-Checksum": checksum("sha1", EXPORT[:5000])})
        assert r.status_code == 204 and r.headers["upload-offset"] == "5000"


async def test_a_wrong_offset_is_409_with_the_real_one_and_a_wrong_type_415(api, runtime, person):
    _, token = person
    async with tus_client(api, token) as client:
        location = await create(client)
        assert (await patch(client, location, 0, EXPORT[:100])).status_code == 204
        for wrong in (0, 50, 200):
            r = await patch(client, location, wrong, EXPORT[wrong:wrong + 100])
            assert r.status_code == 409, (wrong, r.text)
            assert r.headers["upload-offset"] == "100"
        r = await client.patch(location, content=EXPORT[100:200],
                               headers={"Content-Type": "application/zip", "Upload-Offset": "100"})
        assert r.status_code == 415
        r = await patch(client, location, 100, b"x" * (len(EXPORT)))  # past Upload-Length
        assert r.status_code == 413
        assert await offset_of(client, location) == 100


async def test_one_patch_at_a_time(api, runtime, person):
    _, token = person
    async with tus_client(api, token) as client:
        location = await create(client)
        running = HalfPatch(api, token, location, 0, EXPORT, 1000)
        await running.start()
        await wait_until(lambda: file_size(part_file(runtime, location)), lambda size: size == 1000,
                         what="the running PATCH's first bytes on disk")
        second = await patch(client, location, 0, EXPORT[:10])
        assert second.status_code == 409, second.text
        assert (await client.delete(location)).status_code == 409
        await running.drop()
        await wait_until(lambda: offset_of(client, location), lambda offset: offset == 1000,
                         what="the dropped PATCH's bytes to be counted")
        assert (await patch(client, location, 1000, EXPORT[1000:2000])).status_code == 204


async def test_an_expired_upload_is_410_its_bytes_gone_and_the_sweep_removes_it(api, runtime, person):
    # The worker's reconciler sweeps on its own timer, at any moment of this test: every assertion
    # holds whether or not its sweep ran in between.
    _, token = person
    async with tus_client(api, token) as client:
        location = await create(client)
        assert (await patch(client, location, 0, EXPORT[:100])).status_code == 204
        upload_id = location.rsplit("/", 1)[1]
        await expire(runtime, upload_id, seconds_ago=1)
        r = await client.head(location)
        assert r.status_code == 410
        assert not part_file(runtime, location).exists()
        assert (await patch(client, location, 100, EXPORT[100:200])).status_code == 410
        await sweep_expired(runtime.db, runtime.settings)
        assert (await client.head(location)).status_code == 410  # still within the 410 window
        await expire(runtime, upload_id, seconds_ago=runtime.settings.upload_gone_kept_s + 1)
        await sweep_expired(runtime.db, runtime.settings)
        assert (await client.head(location)).status_code == 404


async def test_the_sweep_removes_an_expired_uploads_bytes_before_anyone_asks(api, runtime, person):
    _, token = person
    async with tus_client(api, token) as client:
        location = await create(client)
        assert (await patch(client, location, 0, EXPORT[:100])).status_code == 204
        await expire(runtime, location.rsplit("/", 1)[1], seconds_ago=1)
        await sweep_expired(runtime.db, runtime.settings)
        assert not part_file(runtime, location).exists()
        assert (await client.head(location)).status_code == 410


async def test_termination_removes_the_upload(api, runtime, person):
    _, token = person
    async with tus_client(api, token) as client:
        location = await create(client)
        assert (await patch(client, location, 0, EXPORT[:100])).status_code == 204
        r = await client.delete(location)
        assert r.status_code == 204 and r.headers["tus-resumable"] == "1.0.0"
        assert not part_file(runtime, location).exists()
        assert (await client.head(location)).status_code == 404
        assert (await patch(client, location, 100, EXPORT[100:200])).status_code == 404
        assert (await client.delete(location)).status_code == 404


async def test_another_persons_upload_is_not_found(api, runtime, person):
    owner, token = person
    _, stranger = await runtime.db.tokens.create(f"{owner}-stranger", "test_tus")
    async with tus_client(api, token) as mine, tus_client(api, stranger) as theirs, \
            tus_client(api, ADMIN) as operator:
        location = await create(mine)
        assert (await theirs.head(location)).status_code == 404
        assert (await patch(theirs, location, 0, EXPORT[:100])).status_code == 404
        assert (await theirs.delete(location)).status_code == 404
        assert await offset_of(mine, location) == 0  # untouched
        # A person's token names only its own person; the operator must name one.
        assert (await mine.post("/v1/uploads?user=someone-else", headers={"Upload-Length": "10"})).status_code == 403
        assert (await operator.post("/v1/uploads", headers={"Upload-Length": "10"})).status_code == 403
        assert await offset_of(operator, f"{location}?user={owner}") == 0
        r = await operator.post(f"/v1/uploads?user={owner}", headers={"Upload-Length": "10"})
        assert r.status_code == 201 and r.headers["location"].endswith(f"?user={owner}")
        assert await offset_of(mine, urlsplit(r.headers["location"]).path) == 0


async def test_without_tus_resumable_it_is_412_and_bad_creations_are_refused(api, runtime, person):
    _, token = person
    async with httpx.AsyncClient(base_url=api, headers=bearer(token), timeout=TIMEOUT) as plain:
        r = await plain.post("/v1/uploads", headers={"Upload-Length": "10"})
        assert r.status_code == 412
        assert r.headers["tus-version"] == "1.0.0" and r.headers["tus-resumable"] == "1.0.0"
        assert r.json()["error"]["message"]
        assert (await plain.head("/v1/uploads/anything", headers={"Tus-Resumable": "0.2.2"})).status_code == 412
    async with tus_client(api) as anonymous:
        assert (await anonymous.post("/v1/uploads", headers={"Upload-Length": "10"})).status_code == 401
    limit = runtime.settings.upload.max_upload_bytes
    async with tus_client(api, token) as client:
        assert (await client.post("/v1/uploads")).status_code == 400  # no Upload-Length
        assert (await client.post("/v1/uploads", headers={"Upload-Length": "ten"})).status_code == 400
        assert (await client.post("/v1/uploads", headers={"Upload-Length": "0"})).status_code == 400
        r = await client.post("/v1/uploads", headers={"Upload-Length": str(limit + 1)})
        assert r.status_code == 413 and r.headers["tus-max-size"] == str(limit)
        r = await client.post("/v1/uploads", headers={"Upload-Length": "10", "Upload-Metadata": "filename %%%"})
        assert r.status_code == 400
        location = await create(client, 10)
        r = await patch(client, location, 0, b"not an export")  # 13 bytes: past the length too
        assert r.status_code == 413
        r = await patch(client, location, 0, b"plain text")
        assert r.status_code == 415  # neither a zip nor JSON by its first bytes
        assert await offset_of(client, location) == 0
