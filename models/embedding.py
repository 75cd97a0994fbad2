"""Embedding spaces: which model made a vector, so vectors of two models never mix.

A vector is only comparable with vectors of the same space (provider, model,
dimensions). ``EmbeddingSpace.space_id`` is the stable string stored beside
every vector (``chunk_embeddings.model``) and used to pick the HNSW index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Chunks are embedded as documents, search text as queries: asymmetric models
# (e5, Cohere v3) embed the two differently.
EmbedKind = Literal["document", "query"]
EMBED_KINDS: tuple[EmbedKind, ...] = ("document", "query")


@dataclass(frozen=True, slots=True)
class EmbeddingSpace:
    provider: str  # "local" | "bedrock-titan" | "bedrock-cohere" | "hash"
    model: str  # the provider's model name, e.g. "amazon.titan-embed-text-v2:0"
    dimensions: int
    normalised: bool = True  # unit length, so cosine distance == 1 - dot product

    def __post_init__(self) -> None:
        if self.dimensions <= 0:
            raise ValueError(f"dimensions must be positive, not {self.dimensions}")
        if not self.provider or not self.model or "/" in self.provider:
            raise ValueError(f"bad embedding space {self.provider!r}/{self.model!r}")

    @property
    def space_id(self) -> str:
        """Stable id, e.g. ``bedrock-titan/amazon.titan-embed-text-v2:0/1024``."""
        return f"{self.provider}/{self.model}/{self.dimensions}"


@dataclass(frozen=True, slots=True)
class EmbeddingBatch:
    """Vectors for a batch of texts, in the order the texts were given."""

    space: EmbeddingSpace
    kind: EmbedKind
    vectors: list[list[float]]

    def __post_init__(self) -> None:
        for v in self.vectors:
            if len(v) != self.space.dimensions:
                raise ValueError(f"{self.space.space_id}: a vector has {len(v)} dimensions")
