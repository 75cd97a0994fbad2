"""The upload routes over real sockets, on the session's embedded stack and workers.

The shipped sample uploaded raw and as multipart, to the local directory and
to S3 (a local moto server), runs the pipeline to complete from storage; the
limit (declared, and undeclared with a chunked body), a non-export, no token,
another person, a duplicate while running (and a stale one superseded), and
the server-sent events with their ids and Last-Event-ID resume.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from soulprint.reporting import job_finished
from soulprint.runtime import api_context, http_app
from soulprint.services.auth import Authenticator
from soulprint.services.http import imports
from soulprint.services.http.health import Health
from soulprint.services.http.server import ApiServer, bind
from soulprint.services.storage.s3 import S3Storage
from support.pipeline import reconciler_paused
from support.s3 import bucket_keys, moto_s3
from support.waiting import wait_until

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-export.zip"
SAMPLE_SHA = hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
ADMIN = "operator-token-for-the-upload-tests-0123"
SMALL = 4096
TIMEOUT = httpx.Timeout(60.0)


async def serve(rt, storage, **upload) -> ApiServer:
    """The upload routes as the upload service builds them (runtime.api_context + http_app), on a free port."""
    settings = dataclasses.replace(rt.settings, upload=dataclasses.replace(rt.settings.upload, **upload))
    ctx = api_context(settings, rt.db, Authenticator(rt.db.tokens, ADMIN), Health(settings, rt.db, None, None),
                      storage, None)
    server = ApiServer(http_app(ctx, (imports,)), bind("127.0.0.1", 0))
    await server.start()
    return server


@pytest.fixture(scope="module")
async def local_api(runtime):
    server = await serve(runtime, runtime.storage)
    yield server.url
    await server.stop()


@pytest.fixture(scope="module")
async def small_api(runtime):
    server = await serve(runtime, runtime.storage, max_upload_bytes=SMALL)
    yield server.url
    await server.stop()


@pytest.fixture(scope="module")
def s3_server():
    with moto_s3() as server:
        yield server


@pytest.fixture
async def s3_api(runtime, s3_server, monkeypatch):
    """Uploads into the bucket, and the session's workers reading from it (their storage swapped for the test)."""
    endpoint, bucket = s3_server
    storage = S3Storage(f"s3://{bucket}/uploads", endpoint_url=endpoint)
    monkeypatch.setattr(runtime, "storage", storage)
    server = await serve(runtime, storage)
    yield server.url, storage
    await server.stop()


async def person(runtime, name: str) -> tuple[str, dict]:
    user = f"{name}-{uuid.uuid4().hex[:8]}"
    _, token = await runtime.db.tokens.create(user, "test_uploads")
    return user, {"Authorization": f"Bearer {token}"}


def multipart_body() -> dict:
    return {"files": {"file": ("export.zip", SAMPLE.read_bytes(), "application/zip")},
            "data": {"note": "a field before or after the file is ignored"}}


async def upload(url: str, headers: dict, way: str, params=None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=TIMEOUT) as client:
        if way == "raw":
            return await client.post("/v1/imports", content=SAMPLE.read_bytes(), params=params,
                                     headers={"Content-Type": "application/zip"})
        return await client.post("/v1/imports", params=params, **multipart_body())


async def finished(runtime, job_id: str):
    return await wait_until(lambda: runtime.db.jobs.get(job_id), job_finished, limit_s=180,
                            what=f"import {job_id} to finish")


def error_of(response: httpx.Response) -> dict:
    assert response.headers["content-type"].startswith("application/json"), response.text
    return response.json()["error"]


# -- the pipeline from storage ------------------------------------------------------------------


@pytest.mark.parametrize("way", ["raw", "multipart"])
async def test_an_upload_to_the_local_directory_runs_to_complete(runtime, local_api, way):
    user, headers = await person(runtime, f"local-{way}")
    response = await upload(local_api, headers, way)
    assert response.status_code == 202, response.text
    body = response.json()
    job_id = body["job_id"]
    assert body == {"job_id": job_id, "status_url": f"/v1/imports/{job_id}",
                    "events_url": f"/v1/imports/{job_id}/events", "sha256": SAMPLE_SHA,
                    "bytes": SAMPLE.stat().st_size}
    [uri] = await runtime.storage.list_person(user)
    assert uri.endswith(f"/{job_id}/export.zip") and (await runtime.db.jobs.get(job_id)).source_uri == uri
    job = await finished(runtime, job_id)
    assert job.status == "complete" and job.quick_status == "ready", job.error
    async with httpx.AsyncClient(base_url=local_api, headers=headers, timeout=TIMEOUT) as client:
        status = (await client.get(body["status_url"])).json()
    assert status["job_id"] == job_id and status["status"] == "complete" and status["counts"]["conversations"] > 0


@pytest.mark.parametrize("way", ["raw", "multipart"])
async def test_an_upload_to_s3_runs_to_complete(runtime, s3_api, s3_server, way):
    url, storage = s3_api
    user, headers = await person(runtime, f"s3-{way}")
    response = await upload(url, headers, way)
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert (await runtime.db.jobs.get(job_id)).source_uri.startswith(f"s3://{storage.bucket}/uploads/")
    job = await finished(runtime, job_id)
    assert job.status == "complete" and job.quick_status == "ready", job.error
    assert [k for k in bucket_keys(*s3_server) if job_id in k] == [f"uploads/{user}/{job_id}/export.zip"]


# -- refusals --------------------------------------------------------------------------------


async def raw_http(url: str, head: str, body: bytes = b"") -> tuple[int, dict]:
    """One request written as bytes on a socket (any Content-Length, chunked or not); its status and JSON."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + body)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 60)  # a guard against a hang; the server closes
    finally:
        writer.close()
    status = int(response.split(b" ", 2)[1])
    return status, orjson.loads(response.split(b"\r\n\r\n", 1)[1])


async def test_a_declared_size_over_the_limit_is_refused_before_reading(runtime, small_api):
    user, headers = await person(runtime, "declared")
    status, body = await raw_http(small_api, (
        f"POST /v1/imports HTTP/1.1\nHost: test\nAuthorization: {headers['Authorization']}\n"
        f"Content-Type: application/zip\nContent-Length: {SMALL * 1000}\n\n"))
    assert status == 413 and body["error"]["type"] == "request_too_large"
    assert await runtime.storage.list_person(user) == []


async def test_an_undeclared_body_over_the_limit_is_refused_while_reading(runtime, small_api):
    user, headers = await person(runtime, "chunked")
    chunk = b"PK\x03\x04" + b"x" * 1020
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(16)) + b"0\r\n\r\n"
    status, body = await raw_http(small_api, (
        f"POST /v1/imports HTTP/1.1\nHost: test\nAuthorization: {headers['Authorization']}\n"
        f"Content-Type: application/octet-stream\nTransfer-Encoding: chunked\n\n"), chunked)
    assert status == 413 and str(SMALL) in body["error"]["message"]
    root = runtime.storage.root
    assert await runtime.storage.list_person(user) == [] and not list(root.glob(f"{user}*/**/.incoming-*"))


async def test_not_an_export_is_415_in_one_line(runtime, local_api):
    user, headers = await person(runtime, "html")
    async with httpx.AsyncClient(base_url=local_api, headers=headers, timeout=TIMEOUT) as client:
        refused = await client.post("/v1/imports", content=b"<html>not an export</html>",
                                    headers={"Content-Type": "application/octet-stream"})
        wrong_type = await client.post("/v1/imports", content=b"[]", headers={"Content-Type": "text/plain"})
        no_field = await client.post("/v1/imports", files={"other": ("x.zip", SAMPLE.read_bytes())})
    assert refused.status_code == 415 and "not a zip or JSON export" in error_of(refused)["message"]
    assert "\n" not in error_of(refused)["message"]
    assert wrong_type.status_code == 415 and no_field.status_code == 400
    assert await runtime.storage.list_person(user) == []


async def test_no_token_is_401_and_another_person_is_refused(runtime, local_api):
    owner, owner_headers = await person(runtime, "owner")
    _, other_headers = await person(runtime, "other")
    async with httpx.AsyncClient(base_url=local_api, timeout=TIMEOUT) as client:
        assert (await client.post("/v1/imports", content=SAMPLE.read_bytes())).status_code == 401
        created = await client.post("/v1/imports", content=SAMPLE.read_bytes(), headers=owner_headers)
        job_id = created.json()["job_id"]
        # A person's token naming another person: 403; another person's job: 404, its events too.
        named = await client.post("/v1/imports", params={"user": owner}, content=b"[]", headers=other_headers)
        assert named.status_code == 403
        for path in (f"/v1/imports/{job_id}", f"/v1/imports/{job_id}/events", "/v1/imports/no-such-job"):
            assert (await client.get(path, headers=other_headers)).status_code == 404
        # The operator names the person.
        admin = {"Authorization": f"Bearer {ADMIN}"}
        assert (await client.get(f"/v1/imports/{job_id}", params={"user": owner}, headers=admin)).status_code == 200
    await finished(runtime, job_id)


async def test_the_same_export_while_running_is_409_and_a_stale_one_is_superseded(runtime, local_api):
    user, headers = await person(runtime, "twice")
    # A running job of the sample: queued, with no event, so it stays running for the test.
    await runtime.db.uploads.create_job("held-" + user, user, SAMPLE.as_uri(), sha256=SAMPLE_SHA,
                                        size=SAMPLE.stat().st_size, stale_s=3600)
    async with httpx.AsyncClient(base_url=local_api, headers=headers, timeout=TIMEOUT) as client:
        again = await client.post("/v1/imports", content=SAMPLE.read_bytes())
        assert again.status_code == 409 and error_of(again)["job_id"] == "held-" + user
        assert await runtime.storage.list_person(user) == []  # the second copy is not kept
        async with reconciler_paused(runtime.db):  # the aged job is stalled to the reconciler too
            await runtime.db.pool.execute("UPDATE import_jobs SET updated_at = now() - interval '2 hours'"
                                          " WHERE job_id = $1", "held-" + user)
            fresh = await client.post("/v1/imports", content=SAMPLE.read_bytes())
    assert fresh.status_code == 202, fresh.text
    old = await runtime.db.jobs.get("held-" + user)
    assert old.status == "failed" and old.error_code == "superseded"
    assert (await finished(runtime, fresh.json()["job_id"])).status == "complete"


# -- server-sent events ----------------------------------------------------------------------


async def events(url: str, path: str, headers: dict) -> list[dict]:
    """Every event of the stream until the server ends it: id, event and data of each."""
    out, current = [], {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=TIMEOUT) as client:
        async with client.stream("GET", path) as response:
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if not line:
                    if current:
                        out.append(current)
                    current = {}
                elif not line.startswith(":"):
                    field, _, value = line.partition(":")
                    current[field] = value.strip()
    return out


async def test_events_carry_growing_ids_end_after_the_end_and_resume(runtime, local_api):
    user, headers = await person(runtime, "events")
    job_id = (await upload(local_api, headers, "raw")).json()["job_id"]
    path = f"/v1/imports/{job_id}/events"
    seen = await events(local_api, path, headers)
    ids = [int(e["id"]) for e in seen]
    assert ids == sorted(set(ids)) and all(e["event"] == "status" for e in seen)
    last = orjson.loads(seen[-1]["data"])
    assert last["job_id"] == job_id and last["status"] == "complete"
    assert job_finished(await runtime.db.jobs.get(job_id))  # the stream ended after the end, not before
    # Resuming after the last id: nothing new, the stream ends; after an older id: the current state, once.
    assert await events(local_api, path, headers | {"Last-Event-ID": str(ids[-1])}) == []
    again = await events(local_api, path, headers | {"Last-Event-ID": str(ids[0])})
    assert [int(e["id"]) for e in again] == [ids[-1]] and orjson.loads(again[0]["data"]) == last


# -- the upload service alone ----------------------------------------------------------------


async def test_the_upload_service_alone_takes_uploads_for_the_workers(runtime):
    """runtime.upload_service_api: /health without an embedder or LLM, the upload routes; no workers of its
    own (the session's do the import)."""
    from soulprint.runtime import upload_service_api

    settings = dataclasses.replace(runtime.settings, service=dataclasses.replace(runtime.settings.service,
                                                                                 admin_token=ADMIN))
    user, headers = await person(runtime, "alone")
    async with upload_service_api(settings) as app:
        server = ApiServer(app, bind("127.0.0.1", 0))
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as client:
                health = (await client.get("/health")).json()
                assert health["status"] == "ok" and health["llm"] is None and health["embedding"] is None
                assert (await client.post("/v1/search", json={"query": "x"}, headers=headers)).status_code == 404
            accepted = await upload(server.url, headers, "multipart")
        finally:
            await server.stop()
    assert accepted.status_code == 202, accepted.text
    assert (await finished(runtime, accepted.json()["job_id"])).status == "complete"


def test_the_upload_service_refuses_the_embedded_stack_in_one_line(capsys, monkeypatch, tmp_path):
    from soulprint import cli

    monkeypatch.delenv("SOULPRINT_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("SOULPRINT_DATA_DIR", str(tmp_path))
    assert cli.main(["upload-service", "--port", "0"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("soulprint: error:") and "SOULPRINT_KAFKA_BOOTSTRAP" in err and "\n" not in err
