"""Where uploaded exports are kept: a local directory, or an S3 bucket (``s3://bucket/prefix``).

The upload service streams an export in (``save``), the workers read it back
(``local_copy``), erasure removes every file of a person (``delete_person``).
Keys are ``<person>/<job id>/export.<kind>``, so a person's files are one
prefix, whatever the backend. ``build_storage`` picks the backend from
SOULPRINT_STORAGE (default: ``<data dir>/uploads``).
"""

from __future__ import annotations

from soulprint.services.storage.base import NotAnExport, Storage, StorageError, Stored, TooLarge, sniff
from soulprint.services.storage.local import LocalStorage
from soulprint.settings import Settings


def build_storage(settings: Settings) -> Storage:
    target = settings.upload.storage
    if target and target.startswith("s3://"):
        from soulprint.services.storage.s3 import S3Storage  # boto3 only when a bucket is configured

        return S3Storage(target, endpoint_url=settings.upload.s3_endpoint_url)
    return LocalStorage(target or settings.data_dir / "uploads")


__all__ = ["LocalStorage", "NotAnExport", "Storage", "StorageError", "Stored", "TooLarge", "build_storage",
           "sniff"]
