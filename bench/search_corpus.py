"""A search corpus at scale: one person with many chunks among many people, written straight to Postgres.

    .venv/bin/python bench/search_corpus.py --database-url URL --total 1000000 --person 100000 --people 1000

The texts are real micro chunks: a generated export (bench/generate_export.py)
is parsed and chunked as the pipeline does, and its micro chunks are the pool.
The measured person gets the first ``--person`` chunks of the pool (their own
history); every other person gets pool chunks with a few words of their own
appended, so no two people share a vector and the index holds the near
neighbours of the measured person's chunks under other people's names, the
hard case for a filtered index scan. Vectors come from the default local
embedder (wordllama), as the embedding stage would write them. Rows go in
with binary COPY; the job rows say complete with embedding complete, so the
search treats each person's import as current.

This writes SQL of its own on purpose: it is a loader for a benchmark, not
part of the product, and it must write a million rows in minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import struct
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg

from soulprint.domain.chunking import iter_chunks
from soulprint.domain.parsing.reader import ExportReader
from soulprint.services.db import Database
from soulprint.services.embeddings import build_embedder

BIG = "bench-person"
NAMESPACE = uuid.UUID("5017bec4-0000-4000-8000-000000000000")
CONVERSATION_CHUNKS = 25  # micro chunks per synthetic conversation
EPOCH = datetime(2024, 2, 15, tzinfo=timezone.utc)
EXTRA_WORDS = ("amber", "harbour", "violin", "gravel", "lantern", "orchid", "copper", "meadow", "quartz",
               "saffron", "tundra", "walnut", "zephyr", "basalt", "cobalt", "juniper", "marble", "nectar")


def pool_texts(source: Path, limit: int) -> list[str]:
    texts: list[str] = []
    with ExportReader(source) as reader:
        for conv in reader:
            for chunk in iter_chunks("bench", conv):
                if chunk.tier == "micro":
                    texts.append(chunk.content)
                    if len(texts) >= limit:
                        return texts
    return texts


def encode_vector(values) -> bytes:
    """pgvector's binary input: dimensions (int16), unused (int16), float4 values, big-endian."""
    return struct.pack(f">hh{len(values)}f", len(values), 0, *values)


async def _binary_vector(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("vector", schema="public", encoder=encode_vector,
                              decoder=lambda b: b, format="binary")


def people_sizes(total: int, person: int, people: int) -> list[tuple[str, int]]:
    others = people - 1
    each, extra = divmod(total - person, others) if others else (0, 0)
    return [(BIG, person)] + [(f"bench-{i:05d}", each + (1 if i < extra else 0)) for i in range(others)]


async def load(url: str, source: Path, total: int, person: int, people: int, pool_size: int, seed: int) -> dict:
    started = time.perf_counter()
    db = await Database.connect(url)
    embedder = build_embedder("local")
    space = embedder.space
    pool = pool_texts(source, max(pool_size, person))
    parsed_s = time.perf_counter() - started
    rng = random.Random(seed)
    written = 0
    embed_s = 0.0
    async with db.pool.acquire() as conn:
        await _binary_vector(conn)
        for n, (user_id, size) in enumerate(people_sizes(total, person, people)):
            job_id = f"{user_id}-job"
            texts = (pool[:size] if user_id == BIG else
                     [f"{rng.choice(pool)} {' '.join(rng.sample(EXTRA_WORDS, 3))}" for _ in range(size)])
            t0 = time.perf_counter()
            vectors = await embedder.embed_all(texts, "document")
            embed_s += time.perf_counter() - t0
            chunks, embeddings = [], []
            for i, (text, vector) in enumerate(zip(texts, vectors)):
                conversation = f"c-{i // CONVERSATION_CHUNKS:05d}"
                cid = uuid.uuid5(NAMESPACE, f"{user_id}/{i}")
                at = EPOCH + timedelta(minutes=(i * 37 + n) % (2 * 365 * 24 * 60))
                chunks.append((cid, user_id, job_id, conversation, f"Conversation {conversation}", "micro",
                               i % CONVERSATION_CHUNKS, text, max(1, len(text) // 4), [f"{conversation}-m{i}"], at))
                embeddings.append((job_id, cid, space.space_id, space.dimensions, list(vector)))
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO import_jobs (job_id, user_id, source_uri, status, stage, ingest_done,"
                    " chunks_micro, embedding_status, embedding_model, embedding_tiers, embedded, embedding_total,"
                    " finished_at) VALUES ($1, $2, 'bench://', 'complete', 'complete', true, $3, 'complete', $4,"
                    " '{micro}', $3, $3, now()) ON CONFLICT (job_id) DO NOTHING",
                    job_id, user_id, size, space.space_id,
                )
                await conn.execute(
                    "INSERT INTO people (user_id, current_job_id) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING",
                    user_id, job_id,
                )
                await conn.copy_records_to_table(
                    "conversation_chunks", records=chunks,
                    columns=["chunk_id", "user_id", "job_id", "conversation_id", "conversation_title", "tier",
                             "chunk_index", "content", "token_count", "message_ids", "message_at"])
                await conn.copy_records_to_table(
                    "chunk_embeddings", records=embeddings,
                    columns=["job_id", "chunk_id", "model", "dimensions", "embedding"])
            written += size
            if n % 50 == 0:
                print(f"  {written:,}/{total:,} chunks written", file=sys.stderr, flush=True)
    await embedder.close()
    await db.close()
    return {"chunks": written, "people": people, "person_chunks": person, "space": space.space_id,
            "pool": len(pool), "parse_chunk_s": round(parsed_s, 1), "embed_s": round(embed_s, 1),
            "load_s": round(time.perf_counter() - started, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", required=True)
    p.add_argument("--source", type=Path, default=Path("/tmp/bench/classic-100.json"),
                   help="a generated export whose micro chunks are the texts")
    p.add_argument("--total", type=int, default=1_000_000)
    p.add_argument("--person", type=int, default=100_000)
    p.add_argument("--people", type=int, default=1000)
    p.add_argument("--pool", type=int, default=200_000, help="distinct texts drawn from the export")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    print(asyncio.run(load(a.database_url, a.source, a.total, a.person, a.people, a.pool, a.seed)))


if __name__ == "__main__":
    main()
