"""Storage, both backends: a local directory, and S3 through boto3 against a local moto server.

Saving streams, hashes and sniffs; the limit and a non-export refuse with
nothing left behind (an S3 multipart upload aborted too); a person's files
are listed and erased together; local_copy gives a readable path.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from soulprint.services.storage import LocalStorage, NotAnExport, TooLarge, sniff
from soulprint.services.storage.s3 import PART_BYTES, S3Storage
from support.s3 import bucket_keys, moto_s3

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-export.zip"


@pytest.fixture(scope="module")
def s3_server():
    with moto_s3() as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    """A storage of each backend, and a probe of everything it holds (files, objects, unfinished parts)."""
    if request.param == "local":
        store = LocalStorage(tmp_path / "uploads")
        return store, lambda: sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file())
    endpoint, bucket = request.getfixturevalue("s3_server")
    store = S3Storage(f"s3://{bucket}/{request.node.name.replace('[', '-').strip(']')}", endpoint_url=endpoint)
    return store, lambda: [k for k in bucket_keys(endpoint, bucket) if k.split(" ")[-1].startswith(store.prefix)]


async def chunks_of(data: bytes, size: int = 64 << 10):
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def test_save_streams_hashes_and_reads_back(storage):
    store, held = storage
    data = SAMPLE.read_bytes()
    stored = await store.save("ann", "job-1/export", chunks_of(data, 1000), limit=len(data))
    assert (stored.size, stored.sha256, stored.kind) == (len(data), hashlib.sha256(data).hexdigest(), "zip")
    assert stored.uri.endswith("/ann/job-1/export.zip")
    async with store.local_copy(stored.uri) as path:
        assert path.read_bytes() == data
    assert held() and await store.list_person("ann") == [stored.uri]


async def test_a_large_export_goes_up_in_parts(storage):
    store, held = storage
    data = b"PK\x03\x04" + os.urandom(2 * PART_BYTES + 12345)
    stored = await store.save("ann", "job-2/export.zip", chunks_of(data), limit=len(data))
    async with store.local_copy(stored.uri) as path:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == stored.sha256 == hashlib.sha256(data).hexdigest()
    if isinstance(store, S3Storage):
        assert path.exists() is False  # the download was temporary


@pytest.mark.parametrize("head", [b"[", b"  \n{", b"\xef\xbb\xbf\t[", b"\xef\xbb\xbf{"])
async def test_json_is_recognised_after_a_bom_and_whitespace(storage, head):
    store, _ = storage
    stored = await store.save("bo", "job-3/export", chunks_of(head + b'"x"]', 1), limit=100)
    assert stored.kind == "json" and stored.uri.endswith("export.json")


async def test_over_the_limit_leaves_nothing(storage):
    store, held = storage
    data = b"PK\x03\x04" + os.urandom(PART_BYTES + 100)  # past one part: the multipart upload is aborted
    with pytest.raises(TooLarge):
        await store.save("cy", "job-4/export", chunks_of(data), limit=PART_BYTES + 50)
    assert held() == [] and await store.list_person("cy") == []


@pytest.mark.parametrize("body", [b"hello, world", b"", b"   \n  ", b"<html>"])
async def test_not_an_export_leaves_nothing(storage, body):
    store, held = storage
    with pytest.raises(NotAnExport):
        await store.save("di", "job-5/export", chunks_of(body, 3), limit=100)
    assert held() == []


async def test_a_failing_upload_leaves_nothing(storage):
    store, held = storage

    async def broken():
        yield b"PK\x03\x04" + b"x" * (PART_BYTES + 10)
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await store.save("ed", "job-6/export", broken(), limit=1 << 30)
    assert held() == []


async def test_delete_person_removes_all_of_theirs_and_nothing_else(storage):
    store, held = storage
    data = SAMPLE.read_bytes()
    for job in ("a", "b"):
        await store.save("fay", f"{job}/export", chunks_of(data), limit=len(data))
    other = await store.save("fay.other", "c/export", chunks_of(data), limit=len(data))
    assert len(await store.list_person("fay")) == 2
    assert await store.delete_person("fay") == 2
    assert await store.list_person("fay") == [] and await store.list_person("fay.other") == [other.uri]
    assert await store.delete_person("fay") == 0


async def test_save_file_stores_a_finished_file(storage, tmp_path):
    store, _ = storage
    stored = await store.save_file("gus", "job-7/export", SAMPLE)
    assert stored.sha256 == hashlib.sha256(SAMPLE.read_bytes()).hexdigest() and stored.kind == "zip"
    await store.delete(stored.uri)
    assert await store.list_person("gus") == []


async def test_people_with_path_characters_stay_apart(tmp_path):
    store = LocalStorage(tmp_path / "uploads")
    for person in ("..", "a/b", "a"):
        await store.save(person, "j/export", chunks_of(b"[]"), limit=10)
    assert sorted(p.name for p in store.root.iterdir()) == ["%2E%2E", "a", "a%2Fb"]
    assert await store.delete_person("a") == 1 and len(await store.list_person("a/b")) == 1


async def test_a_file_uri_is_read_in_place(tmp_path):
    store = LocalStorage(tmp_path / "uploads")
    async with store.local_copy(SAMPLE.as_uri()) as path:
        assert path == SAMPLE


def test_sniff_waits_for_enough_bytes_then_decides():
    assert sniff(b"P", final=False) is None and sniff(b"\xef\xbb", final=False) is None
    assert sniff(b"  ", final=False) is None
    assert sniff(b"PK\x03\x04", final=False) == "zip" and sniff(b" [", final=True) == "json"
    with pytest.raises(NotAnExport, match="not a zip or JSON export"):
        sniff(b"PK\x05\x06", final=False)
