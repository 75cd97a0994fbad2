"""What a re-import costs: the same export again, then a newer one with 10% more conversations.

    python bench/reimport_bench.py --conversations 330 --seed 1            # the fake Anthropic server
    python bench/reimport_bench.py --conversations 330 --seed 1 --offline  # the offline provider

Generates an export (bench/generate_export.py, a bare conversations.json),
keeps the newest ~1/11 of its conversations aside and changes 2% of the rest
(one more sentence in their last user message): the base export is the rest
before the change, the superset is everything with the change (10% more
conversations, some changed). On a fresh embedded stack in this process it
imports the base, the base again, then the superset, one after the other for
one person, and reports for each: LLM requests by stage, conversations
chunked and carried, extraction chunks extracted and carried, the chunk rows
of the person in the table, the import's wall time; and the superset's
extraction requests as a share of the first import's (the goal: <= 15%).

With the fake Anthropic server (tests/support/fake_anthropic.py, in this
process), requests are what a provider bills: `llm_usage.requests`, the
Postgres response cache answering the rest. The offline provider has no cache
and bills nothing, so there the requests counted are those the stages sent to
it (a counting wrapper around the client).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))  # the fake server and pipeline helpers: tests/support/


class Counting:
    """The LLM client, counting the requests each stage sends through it."""

    def __init__(self, inner, counts: collections.Counter) -> None:
        self.inner, self.counts = inner, counts

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def complete(self, req):
        self.counts[(req.job_id, req.stage or req.task)] += 1
        return await self.inner.complete(req)

    async def complete_many(self, requests):
        for req in requests:
            self.counts[(req.job_id, req.stage or req.task)] += 1
        return await self.inner.complete_many(requests)


def make_exports(args, out: Path) -> tuple[Path, Path, dict]:
    full = out / "generated.json"
    subprocess.run([sys.executable, str(BENCH / "generate_export.py"), "--out", str(full), "--conversations",
                    str(args.conversations), "--seed", str(args.seed), "--quiet"], check=True)
    conversations = json.loads(full.read_text())
    new_n = len(conversations) // 11
    new, rest = conversations[:new_n], conversations[new_n:]
    changed_n = max(1, round(len(rest) * args.changed))
    superset = new + [continued(c) for c in rest[:changed_n]] + rest[changed_n:]
    base_path, superset_path = out / "base.json", out / "superset.json"
    base_path.write_text(json.dumps(rest))
    superset_path.write_text(json.dumps(superset))
    return base_path, superset_path, {"generated": len(conversations), "base": len(rest), "new": new_n,
                                      "changed": changed_n, "superset": len(superset)}


def continued(conversation: dict) -> dict:
    """The conversation with one more sentence in its last user message (it went on)."""
    out = json.loads(json.dumps(conversation))
    last = None
    for node in out["mapping"].values():
        message = node.get("message") or {}
        parts = (message.get("content") or {}).get("parts") or []
        if (message.get("author") or {}).get("role") == "user" and parts and isinstance(parts[0], str):
            if last is None or (message.get("create_time") or 0) >= (last.get("create_time") or 0):
                last = message
    if last is not None:
        last["content"]["parts"][0] += " One more thing: I switched my team to weekly planning."
    return out


async def run(args) -> dict:
    from soulprint.runtime import build_runtime
    from soulprint.services.embedded import Stack
    from soulprint.settings import load_settings
    from support.fake_anthropic import FakeAnthropicServer
    from support.pipeline import import_and_wait

    out = Path(tempfile.mkdtemp(prefix="soulprint-reimport-"))
    base, superset, shape = make_exports(args, out)
    settings = dataclasses.replace(load_settings(), data_dir=out / "data", partitions=4)
    settings = dataclasses.replace(settings, embedding=dataclasses.replace(settings.embedding, provider="hash"))
    fake = None
    if not args.offline:
        fake = FakeAnthropicServer(seed=args.seed)
        await fake.start()
        settings = dataclasses.replace(settings, llm=dataclasses.replace(
            settings.llm, provider="anthropic", api_key="bench", base_url=fake.url, cache_enabled=True,
            backoff_base_s=0.005, backoff_max_s=0.05))
    stack = Stack(settings)
    resolved = stack.start()
    rt = await build_runtime(resolved)
    counts: collections.Counter = collections.Counter()
    if args.offline:
        rt.llm, rt.quick_llm = Counting(rt.llm, counts), Counting(rt.quick_llm, counts)
    await rt.start()
    runs = {}
    try:
        for name, export in (("first", base), ("identical", base), ("superset", superset)):
            started = time.monotonic()
            job = await import_and_wait(rt, "bench", export, limit_s=args.limit_s)
            runs[name] = await report(rt.db, job, time.monotonic() - started, counts, args.offline)
    finally:
        await rt.stop()
        await rt.db.close()
        stack.stop()
        if fake is not None:
            await fake.stop()
    first, superset_run = runs["first"]["requests"].get("facts", 0), runs["superset"]["requests"].get("facts", 0)
    return {
        "provider": "offline" if args.offline else "fake-anthropic",
        "exports": shape,
        "runs": runs,
        "superset_extraction_share_of_first": round(superset_run / first, 3) if first else None,
    }


async def report(db, job, wall_s: float, counts: collections.Counter, offline: bool) -> dict:
    row = await db.pool.fetchrow(
        "SELECT conversations_carried, extraction_carried FROM import_jobs WHERE job_id = $1", job.job_id)
    if offline:
        requests = {stage: n for (job_id, stage), n in sorted(counts.items()) if job_id == job.job_id}
    else:
        rows = await db.pool.fetch("SELECT stage, sum(requests)::int AS n, sum(cache_hits)::int AS hits"
                                   " FROM llm_usage WHERE job_id = $1 GROUP BY stage ORDER BY stage", job.job_id)
        requests = {r["stage"]: r["n"] for r in rows}
        requests["cache_hits"] = sum(r["hits"] for r in rows)
    return {
        "status": f"{job.status} / full pass {job.full_pass_status}",
        "wall_s": round(wall_s, 1),
        "requests": requests,
        "conversations": job.conversations,
        "conversations_chunked": job.conversations_chunked - row["conversations_carried"],
        "conversations_carried": row["conversations_carried"],
        "extraction_chunks": job.extraction_total,
        "extraction_carried": row["extraction_carried"],
        "facts": job.facts_total,
        "chunk_rows_of_the_person": await db.pool.fetchval(
            "SELECT count(*) FROM conversation_chunks WHERE user_id = $1", job.user_id),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conversations", type=int, default=330, help="generated, of which 1/11 are the new ones")
    ap.add_argument("--changed", type=float, default=0.02, help="share of the base's conversations that go on")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--offline", action="store_true", help="the offline provider instead of the fake server")
    ap.add_argument("--limit-s", type=float, default=1800)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
