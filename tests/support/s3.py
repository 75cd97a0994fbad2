"""A local S3 for tests: moto's server on a free port of this machine, one bucket; no network beyond it.

boto3 reads its credentials and region from the environment, so the server
context sets dummy ones (moto accepts any) for as long as it runs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid

import boto3
from moto.server import ThreadedMotoServer

DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_s3():
    """Yields (endpoint_url, bucket) of a running moto server with one empty bucket."""
    saved = {k: os.environ.get(k) for k in DUMMY_AWS}
    os.environ.update(DUMMY_AWS)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    bucket = f"exports-{uuid.uuid4().hex[:8]}"
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        yield endpoint, bucket
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def bucket_keys(endpoint: str, bucket: str) -> list[str]:
    """Every object key of the bucket, and every unfinished multipart upload's key (parts left behind)."""
    s3 = boto3.client("s3", endpoint_url=endpoint)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    keys += [f"(multipart) {u['Key']}" for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    return keys
