"""Which Message Batch each submitted request went into, so a batch is paid for once.

A worker that dies while its batch is pending leaves the batch running at the
API (and billed). When the reconciler re-drives those chunks, the next worker
builds the same requests, so the same custom_ids (response-cache keys): it
finds them here and resumes polling that batch instead of submitting a new one.

Rows are *claimed* (deleted) by whoever reads a batch's result for them; the
claimer records the usage, so a batch read by two workers is still accounted
once. A row nobody claims (its result was cached, then the worker died) is
harmless: the cache answers before this store is asked, and rows older than
the API keeps results (29 days) are dropped.
"""

from __future__ import annotations

import itertools
from typing import Iterable, Protocol, runtime_checkable

# Results stay downloadable for 29 days after creation; past that a row is useless.
RESUME_DAYS = 28


@runtime_checkable
class BatchStore(Protocol):
    async def pending(self, endpoint: str, custom_ids: list[str]) -> dict[str, str]:
        """custom_id → the newest batch it was submitted in (only ids submitted and not yet claimed)."""
        ...

    async def remember(self, endpoint: str, batch_id: str, custom_ids: list[str], job_ids: list[str]) -> None: ...

    async def claim(self, endpoint: str, batch_id: str, custom_ids: list[str]) -> set[str]:
        """Forget these rows; returns the ids this caller removed (and so accounts for)."""
        ...

    async def keepalive(self, job_ids: Iterable[str]) -> None:
        """The batch of these jobs is still being polled: that is progress."""
        ...


class MemoryBatchStore:
    """Process-local: survives a cancelled call, not a dead process. For tests."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], dict[str, int]] = {}  # (endpoint, custom_id) → {batch_id: seq}
        self._seq = itertools.count()
        self.kept_alive: list[str] = []

    async def pending(self, endpoint: str, custom_ids: list[str]) -> dict[str, str]:
        out = {}
        for cid in custom_ids:
            batches = self._rows.get((endpoint, cid))
            if batches:
                out[cid] = max(batches, key=batches.__getitem__)
        return out

    async def remember(self, endpoint: str, batch_id: str, custom_ids: list[str], job_ids: list[str]) -> None:
        for cid in custom_ids:
            self._rows.setdefault((endpoint, cid), {})[batch_id] = next(self._seq)

    async def claim(self, endpoint: str, batch_id: str, custom_ids: list[str]) -> set[str]:
        claimed = set()
        for cid in custom_ids:
            batches = self._rows.get((endpoint, cid), {})
            if batches.pop(batch_id, None) is not None:
                claimed.add(cid)
        return claimed

    async def keepalive(self, job_ids: Iterable[str]) -> None:
        self.kept_alive.extend(job_ids)
