"""The `soulprint` command as a person uses it: real processes, embedded stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

# Every test here runs the `soulprint` command in a child process on an embedded stack.
pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "sample-export.zip"
SOULPRINT = [sys.executable, "-m", "soulprint.cli"]


def run(args, data_dir: Path, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOULPRINT_")}
    env["SOULPRINT_DATA_DIR"] = str(data_dir)
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
