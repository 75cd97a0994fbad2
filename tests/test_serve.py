"""`soulprint serve` as a person runs it: a real child process on its own embedded stack.

It prints its URL once it accepts connections, answers /health, and stops on
SIGINT or SIGTERM with exit 0 and no process left behind; a port in use and a
dead embedded server are one line and a non-zero exit. Also the compose
service that runs it.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path

import httpx
import psutil
import pytest

from test_compose import as_argv, env_of

SOULPRINT = [sys.executable, "-m", "soulprint.cli"]
URL_LINE = re.compile(r"^soulprint serving on (http://127\.0\.0\.1:\d+)$")
STARTUP_GUARD_S = 240  # against a hang only: the embedded stack starts in seconds


@pytest.fixture(scope="module")
def data_dir():
    path = Path(tempfile.mkdtemp(prefix="soulprint-serve-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def serve_env(data_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOULPRINT_", "ANTHROPIC_"))}
    env.update(SOULPRINT_DATA_DIR=str(data_dir), SOULPRINT_EMBEDDING_PROVIDER="hash")
    return env


async def start(data_dir: Path, *args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(*SOULPRINT, "serve", "--port", "0", *args, env=serve_env(data_dir),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    line = (await asyncio.wait_for(proc.stdout.readline(), STARTUP_GUARD_S)).decode().strip()
    match = URL_LINE.match(line)
    assert match, (line, (await proc.stderr.read()).decode() if not line else "")
    return proc, match.group(1)


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in processes:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_serve_prints_its_url_answers_and_stops_cleanly(data_dir, sig):
    proc, url = await start(data_dir)
    children = psutil.Process(proc.pid).children(recursive=True)
    assert children, "the embedded Postgres and broker run as children"
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        health = await client.get("/health")
        refused = await client.get("/v1/soulprint")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert refused.status_code == 401
    proc.send_signal(sig)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert out == b"" and b"Traceback" not in err
    psutil.wait_procs(alive(children), timeout=30)
    assert alive(children) == []


@pytest.mark.integration
async def test_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(*SOULPRINT, "serve", "--port", str(port),
                                                    env=serve_env(tmp_path), stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 2
    assert out == b""
    assert err.decode().splitlines() == [f"soulprint: error: cannot listen on 127.0.0.1:{port}: Address already in use"]


@pytest.mark.integration
async def test_a_dead_embedded_broker_ends_serve_in_one_line(data_dir):
    proc, url = await start(data_dir)
    children = psutil.Process(proc.pid).children(recursive=True)
    (broker,) = [c for c in psutil.Process(proc.pid).children() if "--listener-url" in c.cmdline()]
    broker.kill()
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 1
    assert err.decode().strip().splitlines() == ["soulprint: error: the embedded broker stopped (exit -9)"]
    psutil.wait_procs(alive(children), timeout=30)
    assert alive(children) == []


def test_compose_runs_serve_on_the_compose_kafka_and_postgres():
    import yaml

    from soulprint.cli import build_parser

    compose = yaml.safe_load((Path(__file__).resolve().parents[1] / "docker-compose.yml").read_text())
    serve, worker = compose["services"]["serve"], compose["services"]["worker"]
    argv = as_argv(serve["command"])
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", 8700)
    assert serve["ports"] == ["127.0.0.1:8700:8700"]
    env = env_of(serve)
    assert {k: env[k] for k in env_of(worker)} == env_of(worker)  # the same broker, database and settings
    assert "SOULPRINT_ADMIN_TOKEN" in env
    assert "/health" in " ".join(serve["healthcheck"]["test"])
    assert {dep: spec["condition"] for dep, spec in serve["depends_on"].items()} == {
        "kafka": "service_healthy", "postgres": "service_healthy"}
