"""Build an LLM client from configuration, and the requests for each task.

``build_llm_client(config_from_env())`` is the one-liner for the pipeline:
provider "anthropic" when an API key is configured, else "offline", so a fresh
checkout runs end to end without secrets (its output is labelled offline).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Any, Mapping

from soulprint.domain.prompts import QUICK_SECTIONS, render_quick_sections
from soulprint.models.sections import SECTIONS_SCHEMA

from .base import LLMClient, LLMConfig, LLMRequest, ModelPrice, ResponseCache, Sleep, UsageSink
from .cache import MemoryCache

PROVIDERS = ("anthropic", "bedrock", "offline")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    v = env.get(name)
    return float(v) if v not in (None, "") else default


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    v = env.get(name)
    return int(v) if v not in (None, "") else default


def config_from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> LLMConfig:
    """LLMConfig from environment variables (keyword overrides win).

    ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, SOULPRINT_LLM_PROVIDER,
    SOULPRINT_LLM_FAST_MODEL, SOULPRINT_LLM_CHAT_MODEL, SOULPRINT_LLM_TIMEOUT_S,
    SOULPRINT_LLM_MAX_ATTEMPTS, SOULPRINT_LLM_CONCURRENCY, SOULPRINT_LLM_MAX_CONCURRENCY,
    SOULPRINT_LLM_MAX_WAIT_S, SOULPRINT_LLM_CACHE (0 disables), AWS_REGION /
    AWS_DEFAULT_REGION, SOULPRINT_BEDROCK_ENDPOINT_URL, SOULPRINT_BEDROCK_FAST_MODEL,
    SOULPRINT_BEDROCK_CHAT_MODEL.
    """
    env = os.environ if env is None else env
    d = LLMConfig()
    cfg = LLMConfig(
        provider=(env.get("SOULPRINT_LLM_PROVIDER") or None),
        api_key=env.get("ANTHROPIC_API_KEY") or None,
        base_url=env.get("ANTHROPIC_BASE_URL") or None,
        fast_model=env.get("SOULPRINT_LLM_FAST_MODEL") or d.fast_model,
        chat_model=env.get("SOULPRINT_LLM_CHAT_MODEL") or d.chat_model,
        bedrock_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        bedrock_endpoint_url=env.get("SOULPRINT_BEDROCK_ENDPOINT_URL") or None,
        bedrock_fast_model=env.get("SOULPRINT_BEDROCK_FAST_MODEL") or d.bedrock_fast_model,
        bedrock_chat_model=env.get("SOULPRINT_BEDROCK_CHAT_MODEL") or d.bedrock_chat_model,
        timeout_s=_float(env, "SOULPRINT_LLM_TIMEOUT_S", d.timeout_s),
        max_attempts=_int(env, "SOULPRINT_LLM_MAX_ATTEMPTS", d.max_attempts),
        initial_concurrency=_int(env, "SOULPRINT_LLM_CONCURRENCY", d.initial_concurrency),
        max_concurrency=_int(env, "SOULPRINT_LLM_MAX_CONCURRENCY", d.max_concurrency),
        max_wait_s=_float(env, "SOULPRINT_LLM_MAX_WAIT_S", d.max_wait_s),
        cache_enabled=env.get("SOULPRINT_LLM_CACHE", "1").strip().lower() not in ("0", "false", "no", "off"),
        prices=_prices(env.get("SOULPRINT_LLM_PRICES"), d.prices),
    )
    return replace(cfg, **overrides) if overrides else cfg


def _prices(raw: str | None, defaults: Mapping[str, ModelPrice]) -> dict[str, ModelPrice]:
    """SOULPRINT_LLM_PRICES: JSON {"model-substring": [input, output, cache_write, cache_read]}
    in USD per million tokens, merged over the defaults."""
    prices = dict(defaults)
    if raw:
        try:
            prices.update({k: ModelPrice(*map(float, v)) for k, v in json.loads(raw).items()})
        except (ValueError, TypeError) as exc:
            raise ValueError(f"SOULPRINT_LLM_PRICES is not a JSON object of 4-number lists: {exc}") from None
    return prices


def choose_provider(config: LLMConfig) -> str:
    if config.provider:
        if config.provider not in PROVIDERS:
            raise ValueError(f"unknown LLM provider {config.provider!r} (expected one of {', '.join(PROVIDERS)})")
        return config.provider
    return "anthropic" if config.api_key else "offline"


def build_llm_client(config: LLMConfig | None = None, *, sink: UsageSink | None = None,
                     cache: ResponseCache | None = None, limiter: Any = None, sleep: Sleep | None = None,
                     boto_client: Any = None, batch_store: Any = None) -> LLMClient:
    """The client for ``config`` (default: from the environment).

    cache: used when config.cache_enabled; defaults to a process-local
    MemoryCache (pass PostgresCache(pool) to persist across runs).
    limiter: defaults to the process-wide limiter of the provider endpoint.
    batch_store: where submitted Message Batches are remembered (Anthropic with
    config.batch_api only; Bedrock and offline have no batch mode).
    """
    config = config or config_from_env()
    provider = choose_provider(config)
    if provider == "offline":
        from .offline_provider import OfflineClient

        return OfflineClient(sink=sink)
    if config.cache_enabled and cache is None:
        cache = MemoryCache()
    if provider == "anthropic":
        from .anthropic_provider import AnthropicClient

        return AnthropicClient(config, sink=sink, cache=cache, limiter=limiter, sleep=sleep, batch_store=batch_store)
    from .bedrock_provider import BedrockClient

    return BedrockClient(config, sink=sink, cache=cache, limiter=limiter, sleep=sleep, boto_client=boto_client)


# --------------------------------------------------------------------------- requests per task


def quick_sections_request(payload: Mapping[str, Any], *, job_id: str | None = None,
                           stage: str = "quick_pass") -> LLMRequest:
    """The quick pass's request: prompt rendered from ``payload``, which also rides along for offline."""
    _, (turn,) = render_quick_sections(payload)
    return LLMRequest.for_prompt(QUICK_SECTIONS, turn["content"], schema=SECTIONS_SCHEMA, payload=dict(payload),
                                 job_id=job_id, stage=stage)
