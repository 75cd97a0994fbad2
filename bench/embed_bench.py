"""Embedding models on this machine: speed, and recall on a labelled retrieval set.

    .venv/bin/python bench/embed_bench.py                       # every local model + hash
    .venv/bin/python bench/embed_bench.py --models local:wordllama-l2-supercat-256 --tiers medium

Prints one JSON object per model: load time; texts/s on ~200-character
(micro chunk) and ~2,000-character texts and on whole medium chunks; and, per
chunk tier, recall@5 and MRR over conversations for the queries of
tests/fixtures/retrieval/sample_queries.json (a conversation's score is its
best chunk's cosine). A tier whose embedding would take longer than
--budget-s at the measured speed is skipped and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from soulprint.domain.chunking import chunk_conversation
from soulprint.domain.parsing.reader import ExportReader
from soulprint.services.embeddings import LOCAL_MODELS, Embedder, build_embedder

REPO = Path(__file__).resolve().parents[1]
LABELS = REPO / "tests" / "fixtures" / "retrieval" / "sample_queries.json"
DEFAULT_MODELS = [f"local:{m}" for m in LOCAL_MODELS] + ["hash:"]


def corpus(labels: dict) -> dict[str, list]:
    chunks: dict[str, list] = {"micro": [], "medium": [], "macro": []}
    for export in labels["exports"]:
        with ExportReader(REPO / export) as reader:
            for conv in reader:
                for chunk in chunk_conversation("bench", conv):
                    chunks[chunk.tier].append(chunk)
    return chunks


async def rate(embedder: Embedder, texts: list[str]) -> float:
    start = time.perf_counter()
    await embedder.embed_all(texts, "document")
    return len(texts) / (time.perf_counter() - start)


def score(query_vecs, doc_vecs, docs, queries, k: int = 5) -> dict:
    """recall@k and MRR over conversations, overall and per query kind."""
    import numpy as np

    sims = np.asarray(query_vecs) @ np.asarray(doc_vecs).T
    per_query = []
    for qi, q in enumerate(queries):
        ranked: list[str] = []
        for di in np.argsort(-sims[qi]):
            conv = docs[di].conversation_id
            if conv not in ranked:
                ranked.append(conv)
        relevant = set(q["conversations"])
        first = next((i for i, c in enumerate(ranked) if c in relevant), None)
        per_query.append((q["kind"], len(relevant & set(ranked[:k])) / len(relevant),
                          0.0 if first is None else 1.0 / (first + 1)))

    def mean(rows, i):
        return round(sum(r[i] for r in rows) / len(rows), 3)

    kinds = sorted({r[0] for r in per_query})
    return {"recall@5": mean(per_query, 1), "mrr": mean(per_query, 2),
            "recall@5_by_kind": {kd: mean([r for r in per_query if r[0] == kd], 1) for kd in kinds}}


async def bench(spec: str, chunks: dict[str, list], queries: list[dict], tiers: list[str], budget_s: float) -> dict:
    provider, _, model = spec.partition(":")
    start = time.perf_counter()
    embedder = build_embedder(provider, **({"model": model} if model else {}))
    await embedder.embed(["warm up"], "document")
    out: dict = {"model": embedder.space.space_id, "load_s": round(time.perf_counter() - start, 2)}
    micro = [c.content for c in chunks["micro"][:1000]]
    medium = [c.content for c in chunks["medium"][:20]]
    speed = {"micro": await rate(embedder, micro[:40])}
    n_micro = max(20, min(len(micro), int(speed["micro"] * 10)))
    speed["micro"] = await rate(embedder, micro[:n_micro])
    speed["2000_chars"] = await rate(embedder, [t[:2000] for t in medium])
    speed["medium"] = await rate(embedder, medium)
    speed["macro"] = await rate(embedder, [c.content for c in chunks["macro"][:20]])
    out["texts_per_s"] = {k: round(v, 1) for k, v in speed.items()}
    out["mean_chars"] = {t: round(sum(len(c.content) for c in chunks[t]) / len(chunks[t])) for t in chunks}
    query_vecs = await embedder.embed_all([q["query"] for q in queries], "query")
    for tier in tiers:
        docs = chunks[tier]
        need = len(docs) / speed[tier]
        if need > budget_s:
            out[tier] = {"skipped": f"{len(docs)} chunks would take ~{need:.0f} s (> --budget-s {budget_s:g})"}
            continue
        t0 = time.perf_counter()
        doc_vecs = await embedder.embed_all([c.content for c in docs], "document")
        out[tier] = {"chunks": len(docs), "embed_s": round(time.perf_counter() - t0, 1),
                     **score(query_vecs, doc_vecs, docs, queries)}
    await embedder.close()
    return out


async def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="provider:model, e.g. local:use-multilingual-v3")
    p.add_argument("--tiers", nargs="+", default=["micro", "medium", "macro"])
    p.add_argument("--budget-s", type=float, default=600.0, help="skip a tier whose embedding would take longer")
    args = p.parse_args(argv)
    labels = json.loads(LABELS.read_text(encoding="utf-8"))
    chunks = corpus(labels)
    print(json.dumps({"queries": len(labels["queries"]), "chunks": {t: len(c) for t, c in chunks.items()}}), flush=True)
    for spec in args.models:
        print(json.dumps(await bench(spec, chunks, labels["queries"], args.tiers, args.budget_s)), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
