"""Full-pass throughput against a provider rate limit, with one or more workers.

    python bench/full_pass_bench.py /tmp/bench/flood-5000.json --rpm 1200 --workers 1
    python bench/full_pass_bench.py /tmp/bench/flood-5000.json --rpm 1200 --workers 2

Starts the embedded Postgres and broker in this process, the fake Anthropic
server with a requests-per-minute limit (answered with 429 + retry-after), and
N `soulprint worker` processes against them; publishes one import and follows
it to the end of its full pass. The bound is what the limit allows: successful
LLM requests made divided by the limit. Reports the full pass's wall time (from
its first LLM request to its end), the ratio to the bound, and requests per
1,000 conversations beside a one-request-per-chunk baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

# The test helpers (fake Anthropic server, pipeline helpers) live under tests/support/.
TESTS = Path(__file__).resolve().parents[1] / "tests"
FAKE_SERVER = TESTS / "support" / "fake_anthropic.py"
sys.path.insert(0, str(TESTS))


def fake_stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/_stats") as r:
        return json.loads(r.read())


def drain(pipe, log) -> None:
    for line in pipe:
        if log:
            log.write(f"{time.time():.3f} {line}")
            log.flush()


async def run(args) -> dict:
    from soulprint.services.embedded import Stack
    from soulprint.services.db import Database
    from soulprint.settings import load_settings
    from support.pipeline import job_finished, publish_import
    from support.waiting import wait_until

    fake = subprocess.Popen([sys.executable, str(FAKE_SERVER), "--port", "0",
                             "--latency", str(args.latency), "--rpm", str(args.rpm), "--retry-after", "1"],
                            stdout=subprocess.PIPE, text=True)
    url = fake.stdout.readline().split()[-1]
    settings = dataclasses.replace(load_settings(), data_dir=Path(tempfile.mkdtemp(prefix="soulprint-fp-")))
    stack = Stack(settings)
    resolved = stack.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOULPRINT_")}
    env.update(SOULPRINT_KAFKA_BOOTSTRAP=resolved.kafka_bootstrap, SOULPRINT_DATABASE_URL=resolved.database_url,
               SOULPRINT_DATA_DIR=str(settings.data_dir), ANTHROPIC_API_KEY="bench", ANTHROPIC_BASE_URL=url,
               SOULPRINT_LLM_CACHE="0", SOULPRINT_KAFKA_PARTITIONS=str(args.partitions),
               SOULPRINT_LLM_MAX_CONCURRENCY=str(args.max_concurrency),
               SOULPRINT_FACTS_CONCURRENCY=str(args.facts_concurrency))
    verbose = ["-v"] if args.worker_log else []
    workers = [subprocess.Popen([sys.executable, "-m", "soulprint.cli", *verbose, "worker"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for _ in range(args.workers)]
    # Publish only once every worker holds its partitions: a consumer-group
    # rebalance (about 30 s on Tansu) in the middle would stall everyone.
    for w in workers:
        for line in w.stderr:
            if "consuming from" in line:
                break
    for i, w in enumerate(workers):  # keep draining so a chatty worker never blocks on a full pipe
        log = open(f"{args.worker_log}.{i}", "w") if args.worker_log else None
        threading.Thread(target=drain, args=(w.stderr, log), daemon=True).start()
    db = await Database.connect(resolved.database_url)
    try:
        resolved = dataclasses.replace(resolved, partitions=args.partitions)
        started = time.time()
        job_id = await publish_import(resolved, "bench", Path(args.export))
        job = await wait_until(lambda: db.jobs.get(job_id), job_finished, limit_s=args.limit_s,
                               what="the full pass")
        stats = fake_stats(url)
        first_llm = await db.pool.fetchval(
            "SELECT min(updated_at) FROM fact_extractions WHERE job_id = $1", job_id)
        usage = await db.pool.fetchrow(
            "SELECT sum(requests) AS requests, sum(throttled) AS throttled FROM llm_usage WHERE job_id = $1", job_id)
        timeline = await read_timeline(db, job_id, first_llm, args.timeline_step) if args.timeline_step else None
    finally:
        for w in workers:
            w.terminate()
        for w in workers:
            w.wait()
        await db.close()
        stack.stop()
        fake.terminate()

    ok_requests = stats["status"].get("200", 0)
    bound_s = ok_requests / args.rpm * 60.0
    fp_start = job.full_pass_started_at.timestamp()
    fp_end = job.full_pass_finished_at.timestamp()
    # Extraction overlaps chunking: the pass really begins with its first LLM answer.
    llm_start = min(fp_start, first_llm.timestamp()) if first_llm else fp_start
    wall = fp_end - llm_start
    return {
        "workers": args.workers,
        "facts_concurrency": args.facts_concurrency,
        "chunking_done_after_first_answer_s": round(job.finished_at.timestamp() - llm_start, 1),
        "rpm_limit": args.rpm,
        "latency_s": args.latency,
        "conversations": job.conversations,
        "medium_chunks": job.extraction_total,
        "full_pass_status": job.full_pass_status,
        "llm_requests_ok": ok_requests,
        "llm_429s": stats["status"].get("429", 0),
        "bound_s": round(bound_s, 1),
        "full_pass_wall_s": round(wall, 1),
        "ratio_to_bound": round(wall / bound_s, 3) if bound_s else None,
        "upload_to_done_s": round(fp_end - started, 1),
        "requests_per_1000_conversations": round(1000 * ok_requests / job.conversations, 1),
        "baseline_one_request_per_chunk_per_1000": round(1000 * job.extraction_total / job.conversations, 1),
        "usage_rows": dict(usage) if usage else None,
        **({"timeline": timeline} if timeline else {}),
    }


async def read_timeline(db, job_id: str, origin, step: float) -> list[str]:
    """Cumulative counts every ``step`` seconds from the first LLM answer (negative: before it):
    chunks written (all tiers, medium) by their transaction's start, chunks with facts."""
    if origin is None:
        return []
    rows = await db.pool.fetch(
        """
        WITH ev AS (
            SELECT extract(epoch from created_at - $2) AS t, 1 AS chunk, (tier = 'medium')::int AS medium, 0 AS done
              FROM conversation_chunks WHERE job_id = $1
            UNION ALL
            SELECT extract(epoch from updated_at - $2), 0, 0, 1 FROM fact_extractions
             WHERE job_id = $1 AND status = 'done')
        SELECT floor(t / $3) * $3 AS bucket, sum(chunk) AS chunks, sum(medium) AS medium, sum(done) AS done
          FROM ev GROUP BY 1 ORDER BY 1
        """,
        job_id, origin, step,
    )
    out, chunks, medium, done = [], 0, 0, 0
    for r in rows:
        chunks, medium, done = chunks + r["chunks"], medium + r["medium"], done + r["done"]
        out.append(f"t={float(r['bucket']) + step:7.1f}s chunks {chunks:7d} medium {medium:5d} extracted {done:5d}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("export")
    ap.add_argument("--rpm", type=int, default=1200)
    ap.add_argument("--latency", type=float, default=0.5)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--max-concurrency", type=int, default=64)
    ap.add_argument("--facts-concurrency", type=int, default=4, help="facts batches in flight per worker")
    ap.add_argument("--limit-s", type=float, default=3600)
    ap.add_argument("--worker-log", help="write worker i's stderr, timestamped, to WORKER_LOG.i")
    ap.add_argument("--timeline-step", type=float, default=0,
                    help="also report cumulative chunks written / extracted every this many seconds")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
