"""Persistent response cache: an identical request is never paid for twice.

The key is sha256 over everything that determines the answer: provider,
model, system prompt, messages, schema (and its tool name) and max_tokens.
Re-running a job (a retry after a crash, a re-import of the same export)
therefore costs nothing for the calls that already succeeded. Only successful
answers are stored: a failure is worth asking again.
"""

from __future__ import annotations

import collections
import hashlib
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from .base import LLMRequest

CACHE_KEY_VERSION = 1  # bump to invalidate every key when the body format changes


def cache_key(provider: str, model: str, req: "LLMRequest") -> str:
    material = {
        "v": CACHE_KEY_VERSION,
        "provider": provider,
        "model": model,
        "system": req.system,
        "messages": req.messages,
        "schema": req.schema,
        "schema_name": req.schema_name if req.schema is not None else None,
        "max_tokens": req.max_tokens,
    }
    # Sorted keys: dict order in the schema or messages must not change the key.
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()


class MemoryCache:
    """Process-local LRU. For tests and single-process runs."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._data: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self.hits = 0
        self.misses = 0

    async def get(self, key: str) -> dict[str, Any] | None:
        v = self._data.get(key)
        if v is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return orjson.loads(orjson.dumps(v))  # a copy: callers may mutate their result

    async def put(self, key: str, provider: str, model: str, response: dict[str, Any]) -> None:
        self._data[key] = orjson.loads(orjson.dumps(response))
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class PostgresCache:
    """The ``llm_cache`` table (services/migrations/0002_llm.sql).

    The JSON goes over the wire as text and is cast in SQL, and read back as
    ``response::text``: that works whether or not the pool registered a jsonb
    codec, so this class makes no assumption about how the pool was set up.
    """

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def get(self, key: str) -> dict[str, Any] | None:
        row = await self.pool.fetchval("SELECT response::text FROM llm_cache WHERE key = $1", key)
        return orjson.loads(row) if row is not None else None

    async def put(self, key: str, provider: str, model: str, response: dict[str, Any]) -> None:
        await self.pool.execute(
            """
            INSERT INTO llm_cache (key, provider, model, response)
            VALUES ($1, $2, $3, $4::text::jsonb)
            ON CONFLICT (key) DO UPDATE SET response = EXCLUDED.response, created_at = now()
            """,
            key, provider, model, orjson.dumps(response).decode(),
        )
