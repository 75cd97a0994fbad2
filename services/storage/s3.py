"""Exports in an S3 bucket (``s3://bucket/prefix``), through boto3, every call off the event loop.

An upload goes up as a multipart upload in parts of PART_BYTES, each sent as
soon as it is full, so at most one part of an upload is in memory; one
smaller than a part is a single PUT. A failed upload is aborted, which
deletes its parts: nothing is left in the bucket. Credentials and region are
boto3's own (AWS_* variables, profiles, instance roles); SOULPRINT_S3_ENDPOINT_URL
points it at MinIO or moto.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from soulprint.services.storage.base import Sink, Storage, StorageError, person_segment

PART_BYTES = 8 << 20  # S3's minimum part is 5 MiB (the last excepted)


def _one_line(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip(": ")
    return " ".join(str(exc).split())


async def _call(fn, *args, **kwargs):
    """A boto3 call in a thread; its failure as one StorageError line."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"S3: {_one_line(exc)}") from None


class _MultipartSink(Sink):
    def __init__(self, storage: "S3Storage", key: str) -> None:
        self.s3, self.bucket, self.key = storage.client, storage.bucket, key
        self.uri = f"s3://{storage.bucket}/{key}"
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict] = []

    async def write(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= PART_BYTES:
            await self._send_part()

    async def _send_part(self) -> None:
        if self.upload_id is None:
            created = await _call(self.s3.create_multipart_upload, Bucket=self.bucket, Key=self.key)
            self.upload_id = created["UploadId"]
        number = len(self.parts) + 1
        body, self.buffer = bytes(self.buffer), bytearray()
        sent = await _call(self.s3.upload_part, Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                           PartNumber=number, Body=body)
        self.parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    async def commit(self) -> str:
        if self.upload_id is None:
            await _call(self.s3.put_object, Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer))
            return self.uri
        if self.buffer:
            await self._send_part()
        await _call(self.s3.complete_multipart_upload, Bucket=self.bucket, Key=self.key, UploadId=self.upload_id,
                    MultipartUpload={"Parts": self.parts})
        return self.uri

    async def abort(self) -> None:
        self.buffer = bytearray()
        if self.upload_id is not None:
            with contextlib.suppress(StorageError):
                await _call(self.s3.abort_multipart_upload, Bucket=self.bucket, Key=self.key,
                            UploadId=self.upload_id)


class S3Storage(Storage):
    def __init__(self, target: str, *, endpoint_url: str | None = None) -> None:
        parsed = urlparse(target)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise StorageError(f"SOULPRINT_STORAGE must be a directory or s3://bucket/prefix, got {target!r}")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.client = boto3.client("s3", endpoint_url=endpoint_url)

    def __repr__(self) -> str:
        return f"S3Storage('s3://{self.bucket}/{self.prefix}')"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _object(self, uri: str) -> str:
        parsed = urlparse(uri)
        key = parsed.path.lstrip("/")
        if parsed.scheme != "s3" or parsed.netloc != self.bucket or not key.startswith(self._key("")):
            raise StorageError(f"not an object of this storage (s3://{self.bucket}/{self.prefix})")
        return key

    async def open_sink(self, key: str) -> Sink:
        return _MultipartSink(self, self._key(key))

    @contextlib.asynccontextmanager
    async def download(self, uri: str):
        key = self._object(uri)
        fd, name = tempfile.mkstemp(prefix="soulprint-export-", suffix=Path(key).suffix)
        os.close(fd)
        try:
            # download_file streams in ranged parts, straight to the file.
            await _call(self.client.download_file, self.bucket, key, name)
            yield Path(name)
        finally:
            os.unlink(name)

    async def delete(self, uri: str) -> None:
        await _call(self.client.delete_object, Bucket=self.bucket, Key=self._object(uri))

    async def _keys(self, user_id: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(person_segment(user_id) + "/"))
        return await _call(lambda: [item["Key"] for page in pages for item in page.get("Contents", ())])

    async def delete_person(self, user_id: str) -> int:
        keys = await self._keys(user_id)
        # Unfinished multipart uploads of the person hold parts too.
        uploads = await _call(self.client.list_multipart_uploads, Bucket=self.bucket,
                              Prefix=self._key(person_segment(user_id) + "/"))
        for upload in uploads.get("Uploads", ()):
            await _call(self.client.abort_multipart_upload, Bucket=self.bucket, Key=upload["Key"],
                        UploadId=upload["UploadId"])
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1,000 keys
            batch = [{"Key": k} for k in keys[start:start + 1000]]
            await _call(self.client.delete_objects, Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
        return len(keys)

    async def list_person(self, user_id: str) -> list[str]:
        return sorted(f"s3://{self.bucket}/{key}" for key in await self._keys(user_id))
