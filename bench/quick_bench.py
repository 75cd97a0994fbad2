"""Upload → quick_ready, against the fake Anthropic server with a fixed latency.

    python bench/quick_bench.py single /tmp/bench/quick-100.json --latency 3
    python bench/quick_bench.py flood /tmp/bench/flood-5000.json --small /tmp/bench/small.json --latency 3
    python bench/quick_bench.py chunking /tmp/bench/classic-100.json --small /tmp/bench/small-20.json --latency 0.5

single: the real CLI imports one export (full pass off, so the command ends at
        quick_ready); reports parse time, upload→quick_ready, and the overhead
        beyond parse + one LLM latency.
flood:  one in-process worker; a 5,000-conversation import floods the full
        pass with extraction requests, then another person's small import
        arrives; reports that small import's upload→quick_ready the same way.
chunking: one in-process worker; a small import on the idle worker, then a
        large export (full pass off) until it is chunking, then the same small
        import for another person; reports both quick_ready times and how far
        the second is behind the first (the goal: within 1 s).
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
from pathlib import Path

# The test helpers (fake Anthropic server, pipeline helpers) live under tests/support/.
TESTS = Path(__file__).resolve().parents[1] / "tests"
FAKE_SERVER = TESTS / "support" / "fake_anthropic.py"
sys.path.insert(0, str(TESTS))


def start_fake(latency: float, rpm: int = 0) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, str(FAKE_SERVER), "--port", "0", "--latency", str(latency),
         "--rpm", str(rpm)],
        stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    return proc, line.split()[-1]


def report(job: dict, latency: float) -> dict:
    times = job.stage_times
    parse = times["parsing"]["finished"] - times["parsing"]["started"]
    ready = (job.quick_ready_at - job.created_at).total_seconds()
    return {
        "conversations": job.conversations,
        "bytes_read_mb": round(job.bytes_read / 1e6, 1),
        "parse_s": round(parse, 2),
        "upload_to_quick_ready_s": round(ready, 2),
        "llm_latency_s": latency,
        "overhead_s": round(ready - parse - latency, 2),
        "goal_met": ready - parse - latency <= 3.0,
        # seconds after the upload at which each stage started and finished
        "timeline": {stage: {k: round(v - job.created_at.timestamp(), 2) for k, v in t.items()}
                     for stage, t in times.items()},
    }


def single(args) -> dict:
    fake, url = start_fake(args.latency)
    data_dir = tempfile.mkdtemp(prefix="soulprint-quick-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOULPRINT_")}
    env.update(SOULPRINT_DATA_DIR=data_dir, ANTHROPIC_API_KEY="bench", ANTHROPIC_BASE_URL=url,
               SOULPRINT_FULL_PASS_MIN_CONVERSATIONS=str(10**9), SOULPRINT_LLM_CACHE="0")
    try:
        out = subprocess.run([sys.executable, "-m", "soulprint.cli", "import", args.export, "--user", "bench",
                              "--json"], capture_output=True, text=True, env=env)
    finally:
        fake.terminate()
    result = json.loads(out.stdout)
    times = result["durations_s"]
    ready = result["quick_ready_after_s"]
    return {"mode": "single", "quick_status": result["quick_status"], "conversations": result["counts"]["conversations"],
            "parse_s": times.get("parsing"), "upload_to_quick_ready_s": ready, "llm_latency_s": args.latency,
            "overhead_s": round(ready - times["parsing"] - args.latency, 2),
            "goal_met": ready - times["parsing"] - args.latency <= 3.0}


async def behind_chunking(args) -> dict:
    """A small import on an idle worker, then the same import while another
    person's large export is chunking on that worker: quick_ready of each."""
    from soulprint.models.jobs import JobStatus, QuickStatus
    from soulprint.runtime import build_runtime
    from soulprint.services.embedded import Stack
    from soulprint.services.llm import AdaptiveLimiter
    from soulprint.services.llm.anthropic_provider import AnthropicClient
    from soulprint.settings import load_settings
    from support.pipeline import publish_import
    from support.waiting import wait_until

    fake, url = start_fake(args.latency)
    settings = dataclasses.replace(load_settings(), data_dir=Path(tempfile.mkdtemp(prefix="soulprint-lanes-")),
                                   min_full_pass_conversations=10**9)
    stack = Stack(settings)
    rt = None

    async def quick_ready(user: str):
        job_id = await publish_import(rt.settings, user, Path(args.small))
        return await wait_until(lambda: rt.db.jobs.get(job_id),
                                lambda j: j is not None and j.quick_status in (QuickStatus.READY, QuickStatus.FAILED),
                                limit_s=600, what=f"{user}'s quick pass")

    try:
        rt = await build_runtime(stack.start())
        config = dataclasses.replace(settings.llm, provider="anthropic", api_key="bench", base_url=url,
                                     cache_enabled=False)
        rt.quick_llm = AnthropicClient(config, cache=None, limiter=AdaptiveLimiter(
            settings.quick_llm_concurrency, settings.quick_llm_max_concurrency, name="quick"))
        await rt.start()
        idle = await quick_ready("idle")
        big = await publish_import(rt.settings, "flooder", Path(args.export))
        await wait_until(lambda: rt.db.jobs.get(big),
                         lambda j: j is not None and j.status == JobStatus.CHUNKING and j.conversations_chunked > 0,
                         limit_s=1800, what="the large export to be chunking")
        busy = await quick_ready("newcomer")
        flooding = await rt.db.jobs.get(big)
        idle_s = report(idle, args.latency)["upload_to_quick_ready_s"]
        busy_s = report(busy, args.latency)["upload_to_quick_ready_s"]
        return {"mode": "chunking", "llm_latency_s": args.latency,
                "idle": report(idle, args.latency), "while_chunking": report(busy, args.latency),
                "behind_by_s": round(busy_s - idle_s, 2), "goal_met": busy_s - idle_s <= 1.0,
                "large_export": {"conversations": flooding.conversations, "status_then": flooding.status.value,
                                 "chunked_then": flooding.conversations_chunked}}
    finally:
        if rt is not None:
            await rt.stop()
            await rt.db.close()
        stack.stop()
        fake.terminate()


async def flood(args) -> dict:
    from soulprint.runtime import build_runtime
    from soulprint.services.embedded import Stack
    from soulprint.services.db import PostgresUsageSink
    from soulprint.services.llm import AdaptiveLimiter
    from soulprint.services.llm.anthropic_provider import AnthropicClient
    from soulprint.settings import load_settings
    from support.pipeline import publish_import
    from support.waiting import wait_until

    fake, url = start_fake(args.latency)
    settings = dataclasses.replace(load_settings(), data_dir=Path(tempfile.mkdtemp(prefix="soulprint-flood-")))
    stack = Stack(settings)
    rt = None
    try:
        rt = await build_runtime(stack.start())
        config = dataclasses.replace(settings.llm, provider="anthropic", api_key="bench", base_url=url,
                                     cache_enabled=False)
        sink = PostgresUsageSink(rt.db.pool)
        rt.llm = AnthropicClient(config, sink=sink, cache=None)
        rt.quick_llm = AnthropicClient(config, sink=sink, cache=None, limiter=AdaptiveLimiter(
            settings.quick_llm_concurrency, settings.quick_llm_max_concurrency, name="quick"))
        await rt.start()
        big = await publish_import(rt.settings, "flooder", Path(args.export))
        await wait_until(lambda: rt.db.jobs.get(big),
                         lambda j: j is not None and j.extraction_done >= 500,
                         limit_s=1800, what="the big full pass to be extracting")
        small = await publish_import(rt.settings, "newcomer", Path(args.small))
        job = await wait_until(lambda: rt.db.jobs.get(small), lambda j: j is not None and j.quick_status in ("ready", "failed"),
                               limit_s=600, what="the small import's quick pass")
        flooding = await rt.db.jobs.get(big)
        out = {"mode": "flood", "quick_status": job.quick_status, **report(job, args.latency),
               "flood": {"conversations": flooding.conversations, "extraction_done": flooding.extraction_done,
                         "extraction_total": flooding.extraction_total,
                         "limiter": rt.llm.limiter.stats()}}
        return out
    finally:
        if rt is not None:
            await rt.stop()
            await rt.db.close()
        stack.stop()
        fake.terminate()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("single", "flood", "chunking"))
    ap.add_argument("export")
    ap.add_argument("--small", help="flood, chunking: the other person's small export")
    ap.add_argument("--latency", type=float, default=3.0)
    args = ap.parse_args()
    if args.mode == "single":
        result = single(args)
    else:
        result = asyncio.run(flood(args) if args.mode == "flood" else behind_chunking(args))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
