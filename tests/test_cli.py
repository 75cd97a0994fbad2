"""The `soulprint` command as a person uses it: real processes, embedded stack."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from support.fake_anthropic import FakeAnthropicServer
from support.waiting import wait_until

# Every test here runs the `soulprint` command in a child process on an embedded stack.
pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-export.zip"
SOULPRINT = [sys.executable, "-m", "soulprint.cli"]


def run(args, data_dir: Path, env_extra: dict | None = None, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOULPRINT_")}
    env["SOULPRINT_DATA_DIR"] = str(data_dir)
    env.update(env_extra or {})
    return subprocess.run(SOULPRINT + args, capture_output=True, text=True, env=env, timeout=300, **kw)


def children_alive(pids) -> list[int]:
    alive = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.fixture(scope="module")
def data_dir(data_root):
    return data_root / "cli"


@pytest.fixture(scope="module")
def imported(data_dir):
    result = run(["import", str(SAMPLE), "--user", "demo", "--json"], data_dir)
    return result


def test_import_json_prints_exactly_one_object(imported):
    assert imported.returncode == 0, imported.stderr
    out = json.loads(imported.stdout)  # the whole of stdout is one JSON document
    assert out["status"] == "complete"
    assert out["user_id"] == "demo"
    counts = out["counts"]
    assert counts["conversations"] > 0 and counts["messages"] > 0
    assert set(counts["chunks"]) == {"micro", "medium", "macro"}
    assert all(n > 0 for n in counts["chunks"].values())
    assert "excluded" in counts
    assert {"parsing", "chunking", "total"} <= set(out["durations_s"])


def test_import_waits_for_the_embedding_and_search_finds_sourced_hits(imported, data_dir):
    job = json.loads(imported.stdout)
    assert job["embedding_status"] == "complete" and job["embedded"] == job["embedding"]["total"] > 0
    assert job["embedding"]["space"] == "local/wordllama-l2-supercat-256/256"
    result = run(["search", "demo", "what is going on inside a sourdough starter", "-k", "5", "--json"], data_dir)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert len(out["hits"]) == 5 and out["stats"]["fewer_than_k"] is False
    assert set(out["hits"][0]) == {"chunk_id", "conversation_id", "title", "message_ids", "tier", "message_at",
                                   "score", "ranks", "tokens", "text"}
    assert all(h["message_ids"] and set(h["ranks"]) == {"full_text", "vector"} for h in out["hits"])
    assert out["stats"]["candidates"]["full_text"] > 0 and out["stats"]["candidates"]["vector"] > 0
    nobody = run(["search", "nobody", "sourdough", "--json"], data_dir)
    assert nobody.returncode == 0, nobody.stderr
    assert json.loads(nobody.stdout)["hits"] == [] and json.loads(nobody.stdout)["stats"]["fewer_than_k"] is True


def test_ask_right_after_the_import_answers_from_the_new_soulprint(imported, data_dir):
    # The import's process is also the query service's consumer: it ends only once the
    # query service's view shows the version it wrote.
    job = json.loads(imported.stdout)
    result = run(["ask", "demo", "What is going on with my sourdough starter?", "--json"], data_dir)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["method"] == "offline-extractive" and answer["sources"]
    assert all(s["conversation_id"] and s["message_ids"] for s in answer["sources"])
    assert job["status"] == "complete"


def test_status_reads_the_same_job_back(imported, data_dir):
    job = json.loads(imported.stdout)
    result = run(["status", job["job_id"], "--json"], data_dir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["counts"] == job["counts"]


def test_bad_export_is_one_line_error_and_failed_job(data_dir, tmp_path):
    bad = tmp_path / "notes.json"
    bad.write_text('[{"title": "cut short", "mapping": {')
    result = run(["import", str(bad), "--user", "demo", "--json"], data_dir)
    assert result.returncode == 1
    assert json.loads(result.stdout)["status"] == "failed"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("soulprint: error:")
    assert "Traceback" not in result.stderr


def test_missing_file_is_a_usage_error(data_dir):
    result = run(["import", "/nonexistent/export.zip", "--user", "demo"], data_dir)
    assert result.returncode == 2
    assert result.stderr.strip() == "soulprint: error: no such file or folder: /nonexistent/export.zip"


def test_no_wait_refuses_the_embedded_broker(data_dir):
    result = run(["import", str(SAMPLE), "--user", "demo", "--no-wait"], data_dir)
    assert result.returncode == 2
    assert "--no-wait needs SOULPRINT_KAFKA_BOOTSTRAP" in result.stderr


def test_killed_cli_leaves_no_broker_or_postgres_behind(data_root):
    """SIGKILL gives the CLI no chance to clean up; the children must still die."""
    script = (
        "import sys, os;"
        "from soulprint.settings import load_settings;"
        "from soulprint.services.embedded import Stack;"
        "s = Stack(load_settings()); s.start();"
        "print(os.getpid(), flush=True); sys.stdin.read()"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOULPRINT_")}
    env["SOULPRINT_DATA_DIR"] = str(data_root / "killed")
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    pid = int(proc.stdout.readline())
    children = psutil.Process(pid).children(recursive=True)
    assert len(children) >= 2  # postgres (and its backends) + the broker
    os.kill(pid, signal.SIGKILL)
    proc.wait()
    psutil.wait_procs(children, timeout=30)
    assert children_alive([c.pid for c in children]) == []


# -- faults of issue 8 -------------------------------------------------------------


def soulprint_env(data_dir: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOULPRINT_", "ANTHROPIC_"))}
    env.update(SOULPRINT_DATA_DIR=str(data_dir), **extra)
    return env


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def error_lines(result) -> list[str]:
    return result.stderr.strip().splitlines()


def test_second_import_on_a_busy_data_dir_refuses_in_one_line(data_root):
    """The first import's embedded stack stays up; the second says who holds the data directory."""
    data_dir = data_root / "busy"
    first = subprocess.Popen(SOULPRINT + ["import", str(SAMPLE), "--user", "one", "--json"], env=soulprint_env(data_dir),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = data_dir / "soulprint.lock"
    asyncio.run(wait_until(lambda: _read(lock), lambda text: text.strip() == str(first.pid), limit_s=120,
                           what="the first import to hold the data directory"))
    second = run(["import", str(SAMPLE), "--user", "two"], data_dir)
    out, err = first.communicate(timeout=300)
    assert second.returncode == 2
    assert error_lines(second) == [f"soulprint: error: another soulprint process (pid {first.pid}) is using the "
                                   f"data directory {data_dir}; wait for it to finish or set SOULPRINT_DATA_DIR"]
    assert first.returncode == 0, err
    assert json.loads(out)["status"] == "complete"


async def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


async def test_a_killed_embedded_broker_fails_the_import_in_one_line(data_root):
    """The LLM holds the quick pass open; the broker dies under the import, which must end promptly."""
    data_dir, job_id = data_root / "broker-dies", "broker-dies-job"
    async with FakeAnthropicServer(latency=600) as llm:
        env = soulprint_env(data_dir, ANTHROPIC_API_KEY="test", ANTHROPIC_BASE_URL=llm.url,
                            SOULPRINT_LLM_TIMEOUT_S="900", SOULPRINT_LLM_CACHE="0")
        proc = await asyncio.create_subprocess_exec(
            *SOULPRINT, "import", str(SAMPLE), "--user", "demo", "--job-id", job_id, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        await wait_until(async_value(lambda: llm.stats()["requests"]), lambda n: n > 0, limit_s=120,
                         what="the quick pass to reach the LLM")
        (broker,) = [c for c in psutil.Process(proc.pid).children() if "--listener-url" in c.cmdline()]
        broker.kill()
        out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    lines = err.decode().strip().splitlines()
    assert proc.returncode != 0
    assert lines == [f"soulprint: error: the embedded broker stopped (exit -9); job {job_id} failed"]
    status = run(["status", job_id, "--json"], data_dir)
    job = json.loads(status.stdout)
    assert job["status"] == "failed" and "the embedded broker stopped" in job["error"]


def async_value(get):
    async def probe():
        return get()
    return probe


def test_a_closed_kafka_port_is_one_line(stack_settings, tmp_path):
    result = run(["import", str(SAMPLE), "--user", "demo"], tmp_path, env_extra={
        "SOULPRINT_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}",
        "SOULPRINT_DATABASE_URL": stack_settings.database_url})
    assert result.returncode == 2
    (line,) = error_lines(result)
    assert line.startswith("soulprint: error: cannot reach Kafka at 127.0.0.1:")


def test_closed_kafka_and_postgres_ports_are_one_line(tmp_path):
    result = run(["import", str(SAMPLE), "--user", "demo"], tmp_path, env_extra={
        "SOULPRINT_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}",
        "SOULPRINT_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{closed_port()}/soulprint"})
    assert result.returncode == 2
    (line,) = error_lines(result)
    assert line.startswith("soulprint: error: cannot connect to Postgres")


@pytest.mark.parametrize("command", [["import", str(SAMPLE), "--user", "demo"], ["status", "some-job"]])
def test_an_external_broker_needs_the_workers_database(tmp_path, command):
    """Only the Kafka address set: the CLI would read an embedded database the workers never write to."""
    result = run(command, tmp_path / "data", env_extra={"SOULPRINT_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}"})
    assert result.returncode == 2
    assert error_lines(result) == [
        "soulprint: error: SOULPRINT_KAFKA_BOOTSTRAP is set but SOULPRINT_DATABASE_URL is not: the workers on "
        "that broker write to their own database; set SOULPRINT_DATABASE_URL to it"]
    assert not (tmp_path / "data").exists()


@pytest.fixture
def read_only_dir(tmp_path):
    path = tmp_path / "ro"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("cannot make a read-only directory here")
    yield path
    subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_data_dir_is_one_line_naming_it(read_only_dir):
    result = run(["import", str(SAMPLE), "--user", "demo"], read_only_dir)
    assert result.returncode == 2
    (line,) = error_lines(result)
    assert line.startswith(f"soulprint: error: cannot write to the data directory {read_only_dir} (")
    assert "[Errno" not in line
