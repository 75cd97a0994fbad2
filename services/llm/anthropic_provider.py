"""The Anthropic Messages API through the official SDK (anthropic 2.x, httpx2 inside).

The SDK's retries are off (``max_retries=0``): :class:`RemoteLLMClient` owns the
one retry loop, so a 429 is never retried 3 x 4 times, and every attempt goes
through the shared adaptive limiter. Responses are read with
``with_raw_response`` so the rate-limit headers of *successful* answers are
seen too: a ``remaining: 0`` pauses the limiter before the next request
becomes a guaranteed 429.

With ``config.batch_api``, :meth:`AnthropicClient.complete_many` sends its
requests as one Message Batch instead (batch.py).
"""

from __future__ import annotations

import logging
from typing import Any

import anthropic

from soulprint.models.llm import LLMRequest, LLMResult

from .anthropic_errors import transport_error
from .base import LLMConfig, RemoteLLMClient, ResponseCache, SendResult, Sleep, UsageSink
from .batch import complete_as_batch
from .batch_store import BatchStore
from .ratelimit import exhausted_pause

log = logging.getLogger(__name__)


class AnthropicClient(RemoteLLMClient):
    provider = "anthropic"

    def __init__(self, config: LLMConfig, *, sink: UsageSink | None = None, cache: ResponseCache | None = None,
                 limiter: Any = None, sleep: Sleep | None = None,
                 sdk_client: anthropic.AsyncAnthropic | None = None, batch_store: BatchStore | None = None) -> None:
        self._base_url = config.base_url
        self.batch_store = batch_store  # remembers submitted batches across workers (batch mode only)
        super().__init__(config, sink=sink, cache=cache, limiter=limiter, sleep=sleep)
        if sdk_client is None:
            if not config.api_key:
                raise ValueError("the anthropic provider needs an API key (ANTHROPIC_API_KEY)")
            sdk_client = anthropic.AsyncAnthropic(
                api_key=config.api_key,
                base_url=config.base_url,  # None → ANTHROPIC_BASE_URL or the public API
                timeout=config.timeout_s,
                max_retries=0,
            )
        self.sdk = sdk_client

    def _limiter_key(self) -> str:
        # Different endpoints (the real API, a local fake) have different limits.
        return self.endpoint

    @property
    def endpoint(self) -> str:
        """Which API this client talks to: limits and batch ids belong to it."""
        return f"anthropic:{self._base_url or 'default'}"

    def _model_for(self, role: str) -> str:
        return self.config.model_for(role)

    async def _send(self, model: str, body: dict[str, Any]) -> SendResult:
        try:
            raw = await self.sdk.messages.with_raw_response.create(model=model, **body)
            message = await raw.parse()
        except anthropic.APIError as exc:
            raise transport_error(exc, self.config.timeout_s) from exc
        data = message.to_dict(mode="json")
        return SendResult(body=data, pause_s=exhausted_pause(raw.headers))

    async def complete_many(self, requests: list[LLMRequest]) -> list[LLMResult]:
        if not self.config.batch_api:
            return await super().complete_many(requests)
        return await complete_as_batch(self, requests)

    async def aclose(self) -> None:
        await self.sdk.close()
