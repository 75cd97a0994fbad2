"""The LLM layer: one interface over the Anthropic API, Bedrock and offline rules.

    client = build_llm_client(settings.llm, sink=usage_sink, cache=response_cache)
    result = await client.complete(quick_sections_request(payload, job_id=job_id))
    if result.ok:
        sections = Sections.from_result(result)

See base.py for the contract (complete() never raises for API or validation
failures) and the shared retry/limit/repair engine. ``complete_many()`` takes a
list; with the Anthropic provider and ``batch_api`` it goes through the Message
Batches API (batch.py). The request and result types live in
soulprint.models.llm, the prompts and their answer models in
soulprint.domain.prompts; both are re-exported here. The SQL-backed cache,
usage sink and batch store are in soulprint.services.db.
"""

from soulprint.domain.prompts.quick_sections import quick_sections_request
from soulprint.models.llm import ERROR_KINDS, LLMRequest, LLMResult, PromptSpec, Usage

from .accounting import MemoryUsageSink
from .base import LLMClient, RemoteLLMClient, ResponseCache, TransportError, UsageSink
from .batch_store import BatchStore, MemoryBatchStore
from .cache import MemoryCache, cache_key
from .config import LLMConfig, ModelPrice, default_prices
from .factory import build_llm_client, choose_provider
from .offline_provider import OFFLINE_TASKS, OfflineClient, offline_task
from .ratelimit import AdaptiveLimiter, reset_shared_limiters, shared_limiter

__all__ = [
    "ERROR_KINDS", "LLMClient", "LLMConfig", "LLMRequest", "LLMResult", "ModelPrice", "PromptSpec",
    "RemoteLLMClient", "ResponseCache", "TransportError", "Usage", "UsageSink", "default_prices",
    "MemoryCache", "cache_key", "MemoryUsageSink", "BatchStore", "MemoryBatchStore",
    "build_llm_client", "choose_provider", "quick_sections_request",
    "OFFLINE_TASKS", "OfflineClient", "offline_task",
    "AdaptiveLimiter", "reset_shared_limiters", "shared_limiter",
]
