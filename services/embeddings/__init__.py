"""Embedding providers: ``build_embedder(name, **options)`` picks one by name.

    local           a model shipped inside a package (LOCAL_MODELS; no network)
    bedrock-titan   Amazon Titan Text Embeddings V2 on Bedrock
    bedrock-cohere  Cohere Embed v3 on Bedrock
    hash            feature hashing, for unit tests only

Nothing falls back to another provider: an unknown name or a provider that
cannot start is an EmbeddingError.
"""

from __future__ import annotations

from typing import Any

from .base import Embedder, EmbeddingError, unit
from .bedrock import COHERE_MODELS, TITAN_DIMENSIONS, BedrockCohereEmbedder, BedrockTitanEmbedder
from .hashing import HashEmbedder
from .local import DEFAULT_LOCAL_MODEL, LOCAL_MODELS, LocalEmbedder

PROVIDERS = {
    "local": LocalEmbedder,
    "bedrock-titan": BedrockTitanEmbedder,
    "bedrock-cohere": BedrockCohereEmbedder,
    "hash": HashEmbedder,
}


def build_embedder(name: str, **options: Any) -> Embedder:
    """The embedder called ``name``, built with ``options`` (its constructor's keywords)."""
    cls = PROVIDERS.get(name)
    if cls is None:
        raise EmbeddingError(f"unknown embedding provider {name!r} (known: {', '.join(PROVIDERS)})")
    try:
        return cls(**options)
    except TypeError as exc:
        raise EmbeddingError(f"{name}: {exc}") from exc


__all__ = ["COHERE_MODELS", "DEFAULT_LOCAL_MODEL", "LOCAL_MODELS", "PROVIDERS", "TITAN_DIMENSIONS",
           "BedrockCohereEmbedder", "BedrockTitanEmbedder", "Embedder", "EmbeddingError", "HashEmbedder",
           "LocalEmbedder", "build_embedder", "unit"]
