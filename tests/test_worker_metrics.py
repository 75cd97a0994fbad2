"""`soulprint worker --metrics-port`: a standalone worker answers /health and /metrics (the operator's
token) on a port of its own, and still stops cleanly; without the flag it opens no port."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import uuid

import httpx
import psutil
import pytest

SOULPRINT = [sys.executable, "-m", "soulprint.cli"]
ADMIN = "operator-token-for-the-worker-metrics-test-0123456789"
METRICS_LINE = re.compile(r"^soulprint worker \S+ metrics on (http://127\.0\.0\.1:\d+)/metrics$")
STARTUP_GUARD_S = 240  # against a hang only


def worker_env(settings, data_dir) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOULPRINT_", "ANTHROPIC_"))}
    tag = uuid.uuid4().hex[:8]
    env.update(SOULPRINT_DATA_DIR=str(data_dir), SOULPRINT_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
               SOULPRINT_DATABASE_URL=settings.database_url, SOULPRINT_ADMIN_TOKEN=ADMIN,
               SOULPRINT_EMBEDDING_PROVIDER="hash",
               # Groups and topics of its own: it takes no partition from the session's worker.
               SOULPRINT_APP_ID=f"worker-metrics-{tag}", SOULPRINT_TOPIC_PREFIX=f"wm{tag}")
    return env


async def metrics_url(proc: asyncio.subprocess.Process) -> str:
    """Read the worker's stderr up to the line naming its metrics URL."""
    seen = []
    while True:
        line = (await asyncio.wait_for(proc.stderr.readline(), STARTUP_GUARD_S)).decode()
        if not line:
            raise AssertionError(f"the worker ended before serving metrics: {''.join(seen)}")
        seen.append(line)
        if match := METRICS_LINE.match(line.strip()):
            return match.group(1)


@pytest.mark.integration
async def test_a_worker_serves_metrics_and_health_and_stops_cleanly(stack_settings, tmp_path):
    proc = await asyncio.create_subprocess_exec(*SOULPRINT, "worker", "--metrics-port", "0",
                                                env=worker_env(stack_settings, tmp_path),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        url = await metrics_url(proc)
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            refused = await client.get("/metrics")
            scraped = await client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN}"})
            health = await client.get("/health")
            person = await client.get("/v1/soulprint", headers={"Authorization": f"Bearer {ADMIN}"})
        assert refused.status_code == 401
        assert scraped.status_code == 200 and "soulprint_stage_events_total" in scraped.text
        assert health.status_code == 200 and health.json()["database"] is True
        assert person.status_code == 404  # a worker serves nothing of anyone's
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    # Stopped as Ctrl-C stops it: one line, exit 130, the port closed with it.
    assert proc.returncode == 130 and err.decode().splitlines()[-1] == "soulprint: interrupted", err.decode()
    assert b"Traceback" not in err
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/health")
    assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE
