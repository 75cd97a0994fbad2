"""Shared fixtures: a real embedded Postgres and a real Tansu broker for the session.

Set SOULPRINT_TEST_DATABASE_URL or SOULPRINT_TEST_KAFKA_BOOTSTRAP to run the
same tests against other infrastructure.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from soulprint.services.embedded import Stack
from soulprint.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def make_data_dir(name: str) -> Path:
    """A data directory outside pytest's basetemp.

    As root, embedded Postgres runs as a system user that must traverse the
    path; pytest resets /tmp/pytest-of-<user> to 0700 whenever a session starts.
    """
    return Path(tempfile.mkdtemp(prefix=f"soulprint-{name}-"))


# Fixtures that start (or need) the embedded stack: a test using any of them,
# directly or through another fixture, is an integration test.
STACK_FIXTURES = {"data_root", "stack_settings", "db", "pg_pool", "runtime"}


def pytest_collection_modifyitems(config, items):
    """Put every test in one lane: `unit` unless it touches the stack or says `integration`."""
    for item in items:
        if item.get_closest_marker("integration") is None and item.get_closest_marker("unit") is None:
            uses_stack = STACK_FIXTURES & set(getattr(item, "fixturenames", ()))
            item.add_marker(pytest.mark.integration if uses_stack else pytest.mark.unit)


@pytest.fixture(scope="session")
def data_root():
    root = make_data_dir("tests")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_settings(data_root):
    data_dir = data_root / "session"
    base = dataclasses.replace(
        load_settings(),
        data_dir=data_dir,
        database_url=os.environ.get("SOULPRINT_TEST_DATABASE_URL"),
        kafka_bootstrap=os.environ.get("SOULPRINT_TEST_KAFKA_BOOTSTRAP"),
        # Separate names per session: an external broker may hold older runs.
        app_id=f"soulprint-test-{uuid.uuid4().hex[:8]}",
        topic_prefix=f"t{uuid.uuid4().hex[:8]}",
        partitions=4,
        batch_window_s=0.05,
    )
    # Feature hashing: fast and deterministic. The default local model runs in
    # tests/test_embedding_stage.py (and tests/test_embeddings.py).
    base = dataclasses.replace(base, embedding=dataclasses.replace(base.embedding, provider="hash"))
    stack = Stack(base)
    resolved = stack.start()
    yield resolved
    stack.stop()


@pytest.fixture(scope="session")
async def db(stack_settings):
    from soulprint.services.db import Database

    database = await Database.connect(stack_settings.database_url)
    yield database
    await database.close()


@pytest.fixture(scope="session")
async def pg_pool(db):
    return db.pool


@pytest.fixture(scope="session")
async def runtime(stack_settings, db):
    """One in-process worker (faust app with every agent) for the session."""
    from support.pipeline import running

    async with running(stack_settings) as rt:
        yield rt


@pytest.fixture
def user_id():
    return f"user-{uuid.uuid4().hex[:10]}"
