"""The embedder interface every provider implements.

``embed(texts, kind)`` returns one unit-length vector per text, in order, of
``space.dimensions`` numbers. An embedder takes at most ``max_batch`` texts a
call; ``embed_all`` cuts longer lists. Providers that block (boto3, a CPU
model) do their work off the event loop.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from typing import Sequence

from soulprint.models.embedding import EMBED_KINDS, EmbeddingBatch, EmbeddingSpace, EmbedKind
from soulprint.services.metrics import METRICS


class EmbeddingError(Exception):
    """A provider refused or failed; the message is one line naming the provider."""


class Embedder(ABC):
    space: EmbeddingSpace
    max_batch: int

    async def embed(self, texts: Sequence[str], kind: EmbedKind) -> list[list[float]]:
        if kind not in EMBED_KINDS:
            raise ValueError(f"kind must be one of {EMBED_KINDS}, not {kind!r}")
        if len(texts) > self.max_batch:
            raise ValueError(f"{self.space.provider}: {len(texts)} texts, at most {self.max_batch} a call")
        if not texts:
            return []
        started = time.perf_counter()
        vectors = await self._embed(list(texts), kind)
        if len(vectors) != len(texts):
            raise EmbeddingError(f"{self.space.provider}: {len(vectors)} vectors for {len(texts)} texts")
        # Throughput: rate(soulprint_embedded_texts_total) and the batch time, by embedding space.
        METRICS.embedding_seconds.labels(self.space.space_id).observe(time.perf_counter() - started)
        METRICS.embedded_texts.labels(self.space.space_id, kind).inc(len(texts))
        return EmbeddingBatch(self.space, kind, vectors).vectors

    async def embed_all(self, texts: Sequence[str], kind: EmbedKind) -> list[list[float]]:
        """Any number of texts, in batches of ``max_batch``."""
        out: list[list[float]] = []
        for start in range(0, len(texts), self.max_batch):
            out += await self.embed(texts[start:start + self.max_batch], kind)
        return out

    async def close(self) -> None:
        """Release clients or threads; the default holds none."""

    @abstractmethod
    async def _embed(self, texts: list[str], kind: EmbedKind) -> list[list[float]]:
        ...


def unit(vector: Sequence[float]) -> list[float]:
    """``vector`` scaled to length 1 (a zero vector stays zero)."""
    norm = math.sqrt(sum(x * x for x in vector))
    return [float(x) / norm for x in vector] if norm else [0.0] * len(vector)
