"""A long-lived worker and the topics it consumes, against real brokers (embedded Tansu)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from soulprint.runtime import build_runtime
from soulprint.services.embedded import EmbeddedKafka
from soulprint.topics import ALL, DEAD_LETTERS, SECTIONS

pytestmark = pytest.mark.integration

WORKER = [sys.executable, "-m", "soulprint.cli", "worker"]


async def start_worker(data_dir, bootstrap: str, database_url: str, **extra) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOULPRINT_", "ANTHROPIC_"))}
    env.update(SOULPRINT_DATA_DIR=str(data_dir), SOULPRINT_KAFKA_BOOTSTRAP=bootstrap,
               SOULPRINT_DATABASE_URL=database_url, SOULPRINT_APP_ID=f"w-{uuid.uuid4().hex[:8]}",
               SOULPRINT_TOPIC_PREFIX=f"w{uuid.uuid4().hex[:8]}",
               # The session's embedding space (conftest: hash): a worker on another space would
               # start re-embedding every import of the shared database.
               SOULPRINT_EMBEDDING_PROVIDER="hash", **extra)
    return await asyncio.create_subprocess_exec(*WORKER, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)


async def consuming(worker: asyncio.subprocess.Process) -> str:
    """The worker's first stderr line: it says it is consuming once every consumer group is joined."""
    line = (await asyncio.wait_for(worker.stderr.readline(), timeout=120)).decode()
    assert line.startswith("soulprint worker "), line
    return line


async def test_worker_exits_non_zero_in_one_line_when_its_broker_goes(stack_settings, tmp_path):
    broker = EmbeddedKafka()
    bootstrap = broker.start()
    try:
        worker = await start_worker(tmp_path / "data", bootstrap, stack_settings.database_url,
                                    SOULPRINT_BROKER_TIMEOUT="2")
        await consuming(worker)
        broker.stop()
        rest = await asyncio.wait_for(worker.stderr.read(), timeout=120)
        await asyncio.wait_for(worker.wait(), timeout=30)
    finally:
        broker.stop()
    assert worker.returncode not in (0, None)
    assert rest.decode().splitlines() == [
        f"soulprint: error: lost the broker at {bootstrap} for 2s (SOULPRINT_BROKER_TIMEOUT)"]


async def test_worker_creates_a_missing_data_dir(stack_settings, tmp_path):
    data_dir = tmp_path / "not" / "yet"
    worker = await start_worker(data_dir, stack_settings.kafka_bootstrap, stack_settings.database_url)
    try:
        await consuming(worker)
        assert data_dir.is_dir()
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), timeout=60)


async def test_every_consumed_topic_gets_the_configured_partitions(stack_settings):
    settings = dataclasses.replace(stack_settings, partitions=3, app_id=f"p-{uuid.uuid4().hex[:8]}",
                                   topic_prefix=f"p{uuid.uuid4().hex[:8]}")
    rt = await build_runtime(settings)
    try:
        await rt.start()
        # Every topic an agent consumes (sections are published for the query
        # service; dead letters are set aside): faust declares them on start.
        names = [f"{settings.topic_prefix}.{spec.name}" for spec in ALL if spec not in (SECTIONS, DEAD_LETTERS)]
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics(names)
        finally:
            await admin.close()
    finally:
        await rt.stop()
        await rt.db.close()
    assert {t["topic"]: len(t["partitions"]) for t in described} == {name: 3 for name in names}
