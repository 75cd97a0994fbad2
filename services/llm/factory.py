"""Build an LLM client from configuration.

``build_llm_client(load_settings().llm)`` is the one-liner for the pipeline:
provider "anthropic" when an API key is configured, else "offline", so a fresh
checkout runs end to end without secrets (its output is labelled offline).
The configuration is built only by ``soulprint.settings``.
"""

from __future__ import annotations

from typing import Any

from .base import LLMClient, LLMConfig, ResponseCache, Sleep, UsageSink
from .cache import MemoryCache
from .config import PROVIDERS
from .offline_provider import OfflineClient


def choose_provider(config: LLMConfig) -> str:
    if config.provider:
        if config.provider not in PROVIDERS:
            raise ValueError(f"unknown LLM provider {config.provider!r} (expected one of {', '.join(PROVIDERS)})")
        return config.provider
    return "anthropic" if config.api_key else "offline"


def build_llm_client(config: LLMConfig, *, sink: UsageSink | None = None,
                     cache: ResponseCache | None = None, limiter: Any = None, sleep: Sleep | None = None,
                     boto_client: Any = None, batch_store: Any = None) -> LLMClient:
    """The client for ``config`` (``Settings.llm``).

    cache: used when config.cache_enabled; defaults to a process-local
    MemoryCache (pass PostgresCache(pool) to persist across runs).
    limiter: defaults to the process-wide limiter of the provider endpoint.
    batch_store: where submitted Message Batches are remembered (Anthropic with
    config.batch_api only; Bedrock and offline have no batch mode).
    """
    provider = choose_provider(config)
    if provider == "offline":
        return OfflineClient(sink=sink)
    if config.cache_enabled and cache is None:
        cache = MemoryCache()
    # The provider modules import their SDKs (anthropic, boto3): loaded only when chosen.
    if provider == "anthropic":
        from .anthropic_provider import AnthropicClient

        return AnthropicClient(config, sink=sink, cache=cache, limiter=limiter, sleep=sleep, batch_store=batch_store)
    from .bedrock_provider import BedrockClient

    return BedrockClient(config, sink=sink, cache=cache, limiter=limiter, sleep=sleep, boto_client=boto_client)
