"""The LLM layer's configuration: providers, models, limits and prices.

Built by ``soulprint.settings.load_settings()`` from the environment (the only
reader of it); everything here is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, NamedTuple

PROVIDERS = ("anthropic", "bedrock", "offline")


class ModelPrice(NamedTuple):
    """USD per million tokens. A NamedTuple so plain 4-tuples work in config too."""

    input: float
    output: float
    cache_write: float  # 5-minute ephemeral cache writes (1.25x input)
    cache_read: float  # cache hits (0.1x input)


def default_prices() -> dict[str, ModelPrice]:
    # Keys are matched as substrings of the model id (longest key wins), so the
    # alias "claude-haiku-4-5", the dated id "claude-haiku-4-5-20251001" and the
    # Bedrock id "anthropic.claude-haiku-4-5-20251001-v1:0" all price the same.
    return {
        "claude-haiku-4-5": ModelPrice(1.00, 5.00, 1.25, 0.10),
        "claude-sonnet-4-5": ModelPrice(3.00, 15.00, 3.75, 0.30),
        "claude-sonnet-4": ModelPrice(3.00, 15.00, 3.75, 0.30),
        "claude-opus-4-5": ModelPrice(5.00, 25.00, 6.25, 0.50),
        "claude-opus-4-1": ModelPrice(15.00, 75.00, 18.75, 1.50),
        "claude-3-5-haiku": ModelPrice(0.80, 4.00, 1.00, 0.08),
    }


@dataclass(frozen=True)
class LLMConfig:
    # None lets the factory choose: "anthropic" when an API key is configured,
    # otherwise "offline" (a fresh checkout works without secrets).
    provider: str | None = None
    api_key: str | None = None
    base_url: str | None = None
    fast_model: str = "claude-haiku-4-5"
    chat_model: str = "claude-sonnet-4-5"
    bedrock_region: str | None = None
    bedrock_endpoint_url: str | None = None
    # On-demand use of the 4.5 models may need an inference-profile id instead
    # ("us.anthropic..." / "global.anthropic..."): set these from config.
    bedrock_fast_model: str = "anthropic.claude-haiku-4-5-20251001-v1:0"
    bedrock_chat_model: str = "anthropic.claude-sonnet-4-5-20250929-v1:0"
    timeout_s: float = 60.0
    max_attempts: int = 4  # ours; the SDK's own max_retries is 0
    initial_concurrency: int = 8
    max_concurrency: int = 64
    cache_enabled: bool = True
    prices: Mapping[str, tuple[float, float, float, float]] = field(default_factory=default_prices)
    max_wait_s: float = 120.0  # cap on the total backoff of one call
    # Exponential backoff (full jitter) used when the server gives no retry-after.
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    # A system prompt is marked cache_control only from this size on: below the
    # API's minimum cacheable prefix (1024 tokens Sonnet, 4096 Haiku 4.5) the
    # marker is merely ignored, so this only avoids noise. ~4 chars per token.
    prompt_cache_min_chars: int = 4000
    # complete_many() through the Message Batches API (Anthropic only; see
    # batch.py): half price, answers in minutes to hours instead of seconds.
    batch_api: bool = False
    batch_poll_s: float = 30.0  # seconds between status polls of a pending batch
    batch_max_wait_s: float = 1800.0  # a batch not ended by then fails its requests (and is canceled)
    batch_price_factor: float = 0.5  # batch requests cost half the per-token price, caching included

    def model_for(self, role: str) -> str:
        return self.chat_model if role == "chat" else self.fast_model

    def bedrock_model_for(self, role: str) -> str:
        return self.bedrock_chat_model if role == "chat" else self.bedrock_fast_model

    def price_for(self, model: str) -> ModelPrice | None:
        best: str | None = None
        for key in self.prices:
            if key in model and (best is None or len(key) > len(best)):
                best = key
        return ModelPrice(*self.prices[best]) if best is not None else None
