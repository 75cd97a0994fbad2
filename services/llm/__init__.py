"""The LLM layer: one interface over the Anthropic API, Bedrock and offline rules.

    client = build_llm_client(settings.llm, sink=PostgresUsageSink(pool), cache=PostgresCache(pool))
    result = await client.complete(quick_sections_request(payload, job_id=job_id))
    if result.ok:
        sections = Sections.from_result(result)

See base.py for the contract (complete() never raises for API or validation
failures) and the shared retry/limit/repair engine. ``complete_many()`` takes a
list; with the Anthropic provider and ``batch_api`` it goes through the Message
Batches API (batch.py).
"""

from .accounting import MemoryUsageSink, PostgresUsageSink, usage_for_job
from .batch_store import BatchStore, MemoryBatchStore, PostgresBatchStore
from .base import (
    ERROR_KINDS,
    LLMClient,
    LLMConfig,
    LLMRequest,
    LLMResult,
    ModelPrice,
    RemoteLLMClient,
    ResponseCache,
    TransportError,
    Usage,
    UsageSink,
    default_prices,
    validate_json,
)
from .cache import MemoryCache, PostgresCache, cache_key
from .factory import build_llm_client, choose_provider, quick_sections_request
from .offline_provider import OFFLINE_TASKS, OfflineClient, offline_task
from .ratelimit import AdaptiveLimiter, reset_shared_limiters, shared_limiter

__all__ = [
    "ERROR_KINDS", "LLMClient", "LLMConfig", "LLMRequest", "LLMResult", "ModelPrice", "RemoteLLMClient",
    "ResponseCache", "TransportError", "Usage", "UsageSink", "default_prices", "validate_json",
    "MemoryCache", "PostgresCache", "cache_key",
    "MemoryUsageSink", "PostgresUsageSink", "usage_for_job",
    "BatchStore", "MemoryBatchStore", "PostgresBatchStore",
    "build_llm_client", "choose_provider", "quick_sections_request",
    "OFFLINE_TASKS", "OfflineClient", "offline_task",
    "AdaptiveLimiter", "reset_shared_limiters", "shared_limiter",
]
