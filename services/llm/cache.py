"""Persistent response cache: an identical request is never paid for twice.

The key is sha256 over everything that determines the answer: provider,
model, task and its prompt version, system prompt, messages, schema (and its
tool name) and max_tokens. The prompt version is there so that editing a
prompt (and bumping its version) can never serve an answer to the old text.
Re-running a job (a retry after a crash, a re-import of the same export)
therefore costs nothing for the calls that already succeeded. Only successful
answers are stored: a failure is worth asking again.
"""

from __future__ import annotations

import collections
import hashlib
from typing import Any

import orjson

from soulprint.models.llm import LLMRequest

CACHE_KEY_VERSION = 2  # bump to invalidate every key when the body format changes


def cache_key(provider: str, model: str, req: LLMRequest) -> str:
    material = {
        "v": CACHE_KEY_VERSION,
        "provider": provider,
        "model": model,
        "task": req.task,
        "prompt_version": req.prompt_version,
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

    async def get(self, key: str, **owner: Any) -> dict[str, Any] | None:
        v = self._data.get(key)
        if v is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return orjson.loads(orjson.dumps(v))  # a copy: callers may mutate their result

    async def put(self, key: str, provider: str, model: str, response: dict[str, Any], **owner: Any) -> None:
        self._data[key] = orjson.loads(orjson.dumps(response))
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)
