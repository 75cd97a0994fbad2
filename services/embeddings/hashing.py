"""A deterministic, dependency-free embedder for unit tests only.

Feature hashing of lower-cased word tokens (and their bigrams) into N signed
buckets, normalised. Texts that share words are close; it knows no synonyms,
so it is never a stand-in for a real model: it is built only when asked for
by name (``build_embedder("hash")``).
"""

from __future__ import annotations

import hashlib
import re

from soulprint.models.embedding import EmbeddingSpace, EmbedKind

from .base import Embedder, unit

_WORD = re.compile(r"\w+")


class HashEmbedder(Embedder):
    max_batch = 1024

    def __init__(self, dimensions: int = 256) -> None:
        self.space = EmbeddingSpace("hash", "feature-hash-v1", dimensions)

    async def _embed(self, texts: list[str], kind: EmbedKind) -> list[list[float]]:
        return [self.vector(t) for t in texts]

    def vector(self, text: str) -> list[float]:
        words = _WORD.findall(text.lower())
        features = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
        out = [0.0] * self.space.dimensions
        for feature in features:
            h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "big")
            out[h % self.space.dimensions] += 1.0 if h >> 63 else -1.0
        return unit(out)
