"""Search at scale: vector recall against exact search, and /v1/search latency over HTTP.

    # once: one person with 100,000 chunks among 1,000,000 (bench/search_corpus.py), ~12 min
    .venv/bin/python bench/search_bench.py load --data-dir /tmp/sbench/big
    # the HNSW index, recall of the vector side against exact search, then HTTP latency
    .venv/bin/python bench/search_bench.py run --data-dir /tmp/sbench/big --clients 1,10,50
    # recall at other index search widths (latency always at the product's)
    .venv/bin/python bench/search_bench.py run --ef-search 400,600 --clients 1 --requests 200

``run`` starts the embedded Postgres of ``--data-dir``, builds the HNSW
indexes and counts the words the way the reconciler does
(db.search.maintain_indexes: one partial index per current import with
HNSW_MIN_VECTORS vectors or more, and search_terms for imports of
TERMS_MIN_CHUNKS micro chunks or more, so here the measured person's) and
measures:

* recall: for each query, the measured person's vector candidates through the
  product's search (the HNSW path) against the same search with
  ``exact=True``; recall@k is the share of the exact top k the index path
  returned;
* in process: the same search called here (question embedded, one reader
  session), per question, with no HTTP: less noisy on a shared machine;
* ceilings: from 4 reader sessions at once, no HTTP, searches per second of
  the vector retriever's statement alone, of full text alone and of the whole
  search: what the database can give on this machine, whatever the server;
* latency: a server process (the product's app: QueryService, Authenticator,
  routes, on uvicorn) and this process as the load: ``c`` clients, each
  sending its next POST /v1/search (k 10, the person's own token) when its
  last answered, for ``--requests`` requests per level. Server, load and
  Postgres share this machine's cores; the numbers say what one box does.
  Each level says the CPU time per search of the server process, of all
  Postgres processes and of the load (from /proc).

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import search_corpus  # noqa: E402

from soulprint.services.db import Database, search  # noqa: E402
from soulprint.services.embedded import Stack  # noqa: E402
from soulprint.services.embeddings import build_embedder  # noqa: E402
from soulprint.settings import load_settings  # noqa: E402

PRODUCT_EF_SEARCH = search.HNSW_EF_SEARCH
# What a person asks their history (the generated persona: a data engineer in Lisbon).
QUESTIONS = [
    "when did I move to Lisbon", "what did we decide about Dagster", "my wedding date", "which database for the pipeline",
    "the trip to Japan", "what do I think about remote work", "my sister's birthday", "how I like code reviews",
    "kafka consumer lag problem", "running a half marathon", "the apartment lease", "favourite coffee place",
    "learning Portuguese", "job interview preparation", "dbt models refactor", "airflow migration plan",
    "budget spreadsheet", "my manager feedback", "the climbing gym", "book recommendations",
    "vegetarian recipes", "tax return deadline", "flight to Stockholm", "python packaging issue",
    "postgres vacuum settings", "why I left my last job", "weekend hiking", "dentist appointment",
    "conference talk proposal", "sleep schedule",
]


def settings_for(data_dir: Path):
    # No rate limit: the load is one token at up to 50 clients, measuring the search itself.
    return load_settings({"SOULPRINT_DATA_DIR": str(data_dir), "SOULPRINT_EMBEDDING_PROVIDER": "local",
                          "SOULPRINT_RATE_LIMIT_PER_MIN": "0"})


def queries(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(QUESTIONS) if i % 2 else f"{rng.choice(QUESTIONS)} {rng.choice(QUESTIONS).split()[-1]}"
            for i in range(n)]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def index_and_recall(url: str, n_queries: int, k: int) -> dict:
    db = await Database.connect(url)
    embedder = build_embedder("local")
    space = embedder.space
    started = time.perf_counter()
    built = await db.search.maintain_indexes(space)
    index_s = time.perf_counter() - started
    name = await db.pool.fetchval("SELECT index_name FROM search_indexes WHERE job_id = $1",
                                  f"{search_corpus.BIG}-job")
    recalls, exact_ids, paths = [], [], {}
    for text in queries(n_queries, 7):
        vector = (await embedder.embed([text], "query"))[0]
        async with db.reader.session(search_corpus.BIG) as conn:
            got, rank_hnsw = await db.search.search(conn, search_corpus.BIG, text, vector, space, k)
            _, rank_exact = await db.search.search(conn, search_corpus.BIG, text, vector, space, k, exact=True)
        truth = [c.chunk_id for c in rank_exact["vector"][:k]]
        found = [c.chunk_id for c in rank_hnsw["vector"][:k]]
        d = await distances(db, vector, space, truth + found)
        # A found chunk counts if it is as near as the exact k-th: identical texts (a "Thanks!"
        # said many times) have identical vectors, and which of them ranks first is arbitrary.
        cutoff = max(d[c] for c in truth) + 1e-6
        recalls.append(sum(1 for c in found if d[c] <= cutoff) / max(1, len(truth)))
        exact_ids.append(len(set(truth) & set(found)) / max(1, len(truth)))
        path = got.to_json()["stats"]["vector_path"]
        paths[path] = paths.get(path, 0) + 1
    sizes = await db.pool.fetchrow(
        "SELECT (SELECT count(*) FROM chunk_embeddings) AS vectors,"
        " pg_size_pretty(pg_relation_size($1::regclass)) AS index_size", name)
    await embedder.close()
    await db.close()
    return {"index": name, "index_build_s": round(index_s, 1), "vectors": sizes["vectors"],
            "index_size": sizes["index_size"], "recall_queries": n_queries, "k": k,
            "vector_recall_at_k": round(sum(recalls) / len(recalls), 4), "min_recall": round(min(recalls), 3),
            "same_ids_at_k": round(sum(exact_ids) / len(exact_ids), 4),
            "vector_paths": paths, "built": built["built"]}


async def in_process(url: str, n_queries: int, k: int) -> dict:
    """The product's search called in this process, as QueryService.search runs it (the question
    embedded, then a reader session, the vector retriever on a second one beside it): per-question
    times with no HTTP, less noisy on a shared machine than the load levels."""
    db = await Database.connect(url)
    embedder = build_embedder("local")
    embed_ms, search_ms = [], []
    for text in queries(n_queries, 11) * 2:  # twice: the second round is the one reported
        t0 = time.perf_counter()
        vector = (await embedder.embed([text], "query"))[0]
        t1 = time.perf_counter()
        async with db.reader.session(search_corpus.BIG) as conn:
            await db.search.search(conn, search_corpus.BIG, text, vector, embedder.space, k,
                                   spare=db.reader.spare(search_corpus.BIG))
        embed_ms.append((t1 - t0) * 1000)
        search_ms.append((time.perf_counter() - t1) * 1000)
    await embedder.close()
    await db.close()
    embed_ms, search_ms = embed_ms[n_queries:], search_ms[n_queries:]
    return {"queries": n_queries, "embed_p50_ms": round(percentile(embed_ms, 50), 1),
            "search_p50_ms": round(percentile(search_ms, 50), 1), "search_p95_ms": round(percentile(search_ms, 95), 1),
            "search_max_ms": round(max(search_ms), 1)}


async def distances(db, vector, space, chunk_ids: list[str]) -> dict[str, float]:
    rows = await db.pool.fetch(
        "SELECT chunk_id::text AS id, embedding <=> $1::vector AS d FROM chunk_embeddings"
        " WHERE job_id = $2 AND model = $3 AND chunk_id = ANY($4::uuid[])",
        json.dumps(list(vector)), f"{search_corpus.BIG}-job", space.space_id, list(set(chunk_ids)))
    return {r["id"]: r["d"] for r in rows}


async def serve(url: str, ready_file: Path) -> None:
    """The server process: the product's app over a standalone query service."""
    from soulprint.runtime import standalone_query_service
    from soulprint.services.auth import Authenticator
    from soulprint.services.http.app import build_app
    from soulprint.services.http.health import Health
    from soulprint.services.http.server import ApiServer, bind

    settings = settings_for(Path(os.environ["SOULPRINT_DATA_DIR"])).with_infrastructure(
        kafka_bootstrap="127.0.0.1:1", database_url=url)
    async with standalone_query_service(settings) as query:
        auth = Authenticator(query.db.tokens, None)
        app = build_app(query, auth, settings.service, health=Health(settings, query.db, query.embedder, query.llm))
        server = ApiServer(app, bind("127.0.0.1", 0))
        ready_file.write_text(await server.start())
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(15, stop.set)
        await stop.wait()
        await server.stop()


def _cpu_ticks(pids) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone (a Postgres backend that ended)
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def cpu_meter(server_pid: int):
    """CPU time spent by the server process, every Postgres process and this one (the load),
    between the call and the returned function's call, in ms per ``n``."""
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    before = (_cpu_ticks([server_pid]), _cpu_ticks(_postgres_pids()), _cpu_ticks([os.getpid()]))

    def per(n: int) -> dict:
        after = (_cpu_ticks([server_pid]), _cpu_ticks(_postgres_pids()), _cpu_ticks([os.getpid()]))
        server, postgres, load = ((a - b) * tick_ms / n for a, b in zip(after, before))
        return {"server": round(server, 1), "postgres": round(postgres, 1), "load": round(load, 1),
                "all": round(server + postgres + load, 1)}
    return per


async def ceilings(url: str, n_queries: int, k: int, workers: int = 4) -> dict:
    """The most the database gives on this machine: each retriever's own statements, and the
    product's whole search (one reader session per search, no HTTP), from ``workers`` sessions
    at once, searches per second. The vector retriever alone at the product's ef_search bounds
    what any level of clients can reach."""
    db = await Database.connect(url)
    embedder = build_embedder("local")
    texts = queries(n_queries, 13)
    vectors = [(await embedder.embed([t], "query"))[0] for t in texts]
    await embedder.close()
    depth = max(4 * k, 50)
    person = search_corpus.BIG

    async def vector_only(conn, text, vector):
        job = await search._current(conn, person, embedder.space.space_id)
        scope = (person, job["job_id"], None, None, None, None)
        await db.search._vector_hnsw(conn, scope, json.dumps(list(vector)), embedder.space, depth, False)

    async def full_text_only(conn, text, vector):
        job = await search._current(conn, person)
        await db.search._full_text(conn, (person, job["job_id"], None, None, None, None), text, depth, [])

    async def whole(conn, text, vector):
        await db.search.search(conn, person, text, vector, embedder.space, k)

    out = {"workers": workers, "queries": n_queries}
    for name, step in (("vector", vector_only), ("full_text", full_text_only), ("search", whole)):
        work = iter(range(n_queries))

        async def worker():
            for i in work:
                async with db.reader.session(person) as conn:
                    await step(conn, texts[i], vectors[i])

        await asyncio.gather(*(worker() for _ in range(2)))  # warm
        work = iter(range(n_queries))
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        out[f"{name}_per_s"] = round(n_queries / (time.perf_counter() - started), 1)
    await db.close()
    return out


async def load_http(base: str, token: str, clients: int, requests: int) -> dict:
    """aiohttp as the load, on kept-alive connections (as a real client keeps them: where the
    server's socket lacked TCP_NODELAY, each response waited ~45 ms for a delayed ACK)."""
    import aiohttp

    texts = queries(requests, clients)
    latencies: list[float] = []
    short = 0
    position = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=clients)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(base, connector=connector, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=60)) as client:
        async def one_client():
            nonlocal short
            for i in position:
                t0 = time.perf_counter()
                async with client.post("/v1/search", json={"query": texts[i], "k": 10}) as r:
                    body = await r.json()
                latencies.append((time.perf_counter() - t0) * 1000)
                r.raise_for_status()
                short += body["stats"]["fewer_than_k"]

        for _ in range(min(20, requests)):  # warm the connection pool and the caches
            async with client.post("/v1/search", json={"query": "warm up", "k": 10}) as r:
                await r.read()
        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        wall = time.perf_counter() - started
    return {"clients": clients, "requests": len(latencies), "p50_ms": round(percentile(latencies, 50), 1),
            "p95_ms": round(percentile(latencies, 95), 1), "p99_ms": round(percentile(latencies, 99), 1),
            "searches_per_s": round(len(latencies) / wall, 1), "fewer_than_k": short}


async def make_token(url: str) -> str:
    db = await Database.connect(url)
    try:
        return (await db.tokens.create(search_corpus.BIG, "search bench"))[1]
    finally:
        await db.close()


def run(args, url: str) -> dict:
    out = {"load": os.getloadavg()}
    out["recall"] = []
    for ef in args.ef_search or [search.HNSW_EF_SEARCH]:  # the index's search width, in this process
        search.HNSW_EF_SEARCH = ef
        out["recall"].append({"ef_search": ef, **asyncio.run(index_and_recall(url, args.queries, args.k))})
    search.HNSW_EF_SEARCH = PRODUCT_EF_SEARCH
    out["in_process"] = asyncio.run(in_process(url, args.queries, args.k))
    out["ceilings"] = asyncio.run(ceilings(url, args.queries, args.k))
    token = asyncio.run(make_token(url))
    ready = Path(args.data_dir) / "bench-server.url"
    ready.unlink(missing_ok=True)
    env = dict(os.environ, SOULPRINT_DATA_DIR=str(args.data_dir))
    server = subprocess.Popen([sys.executable, __file__, "serve", "--data-dir", str(args.data_dir), "--url", url],
                              env=env)
    try:
        while not ready.exists():
            if server.poll() is not None:
                raise SystemExit("the bench server exited before it listened")
            time.sleep(0.2)
        base = ready.read_text()
        out["http"] = []
        for clients in args.clients:
            meter = cpu_meter(server.pid)
            level = asyncio.run(load_http(base, token, clients, args.requests))
            level["cpu_ms_per_search"] = meter(level["requests"])
            out["http"].append(level)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("load", "run", "serve"))
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/sbench/big"))
    p.add_argument("--url", help="serve: the database")
    p.add_argument("--source", type=Path, default=Path("/tmp/bench/classic-100.json"))
    p.add_argument("--total", type=int, default=1_000_000)
    p.add_argument("--person", type=int, default=100_000)
    p.add_argument("--people", type=int, default=1000)
    p.add_argument("--queries", type=int, default=200, help="recall: queries compared with exact search")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 50])
    p.add_argument("--requests", type=int, default=1000, help="HTTP requests per concurrency level")
    p.add_argument("--ef-search", type=lambda s: [int(x) for x in s.split(",")],
                   help="recall at these hnsw.ef_search values (default: the product's); latency uses the product's")
    args = p.parse_args()
    if args.mode == "serve":
        asyncio.run(serve(args.url, args.data_dir / "bench-server.url"))
        return
    with Stack(settings_for(args.data_dir)) as stack:
        url = stack.start(need_kafka=False).database_url
        if args.mode == "load":
            result = asyncio.run(search_corpus.load(url, args.source, args.total, args.person, args.people,
                                                    200_000, 1))
        else:
            result = run(args, url)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
