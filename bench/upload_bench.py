#!/usr/bin/env python3
"""Upload a large export over HTTP to `soulprint serve` while sampling the server's RSS; curl to a sink beside it.

    python bench/upload_bench.py --size-mb 300

Generates a ChatGPT export of --size-mb (bench/generate_export.py, JSON so
that every byte goes over the wire), starts `soulprint serve` on its own
embedded stack in a temporary data directory, and uploads the file with
`curl -T` (streamed from disk: curl holds no copy) to POST /v1/imports. The
server process's RSS is sampled every 20 ms from just before the upload until
its 202; the report is the peak above that idle size, and the throughput.
For comparison the same curl writes the same file to a local socket sink, a
tiny server in this process that reads the body and discards it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
ADMIN = "operator-token-for-the-upload-bench-01234"


def generate(out: Path, size_mb: float) -> Path:
    if not out.exists():
        subprocess.run([sys.executable, str(HERE / "generate_export.py"), "--out", str(out), "--size-mb",
                        str(size_mb), "--seed", "7"], check=True, stdout=subprocess.DEVNULL)
    return out


def curl(url: str, path: Path, *headers: str) -> tuple[float, str]:
    """Seconds for curl to send ``path`` as a streamed POST body, and the response body."""
    args = ["curl", "-sS", "-X", "POST", "-T", str(path), "-H", "Content-Type: application/json"]
    for h in headers:
        args += ["-H", h]
    start = time.perf_counter()
    done = subprocess.run(args + [url], check=True, capture_output=True, text=True)
    return time.perf_counter() - start, done.stdout


class Sink:
    """An HTTP server on a free port that reads each request's body and throws it away."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = None
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b"100-continue" in head.lower():
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        left = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        while left:
            left -= len(await reader.read(min(left, 1 << 20)))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()


def start_serve(data_dir: Path) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOULPRINT_", "ANTHROPIC_"))}
    env.update(SOULPRINT_DATA_DIR=str(data_dir), SOULPRINT_EMBEDDING_PROVIDER="hash", SOULPRINT_ADMIN_TOKEN=ADMIN)
    proc = subprocess.Popen([sys.executable, "-m", "soulprint.cli", "serve", "--port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    match = re.match(r"^soulprint serving on (http://\S+)$", line)
    if not match:
        proc.kill()
        raise SystemExit(f"serve did not start: {line!r}")
    return proc, match.group(1)


def sample_rss(pid: int, stop: threading.Event, peaks: list[int]) -> None:
    process = psutil.Process(pid)
    while not stop.is_set():
        peaks.append(process.memory_info().rss)
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=300.0)
    parser.add_argument("--export", type=Path, help="an export to upload instead of a generated one")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="soulprint-upload-bench-"))
    try:
        export = args.export or generate(work / "export.json", args.size_mb)
        size = export.stat().st_size
        sink = Sink()
        sink_s, _ = curl(f"http://127.0.0.1:{sink.port}/", export)
        proc, url = start_serve(work / "data")
        try:
            server = psutil.Process(proc.pid)
            time.sleep(2.0)  # let the freshly started workers settle before the idle reading
            idle = server.memory_info().rss
            stop, samples = threading.Event(), []
            sampler = threading.Thread(target=sample_rss, args=(proc.pid, stop, samples))
            sampler.start()
            upload_s, body = curl(f"{url}/v1/imports?user=bench", export, f"Authorization: Bearer {ADMIN}")
            stop.set()
            sampler.join()
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        accepted = json.loads(body)
        mib = 1 << 20
        report = {
            "export_bytes": size,
            "accepted": {k: accepted.get(k) for k in ("job_id", "bytes", "sha256")} if "job_id" in accepted
            else accepted,
            "server_idle_rss_mb": round(idle / mib, 1),
            "server_peak_rss_mb": round(max(samples) / mib, 1),
            "server_peak_above_idle_mb": round((max(samples) - idle) / mib, 1),
            "upload_s": round(upload_s, 2),
            "upload_mb_per_s": round(size / mib / upload_s, 1),
            "curl_to_sink_s": round(sink_s, 2),
            "curl_to_sink_mb_per_s": round(size / mib / sink_s, 1),
        }
        print(json.dumps(report, indent=2))
        return 0 if accepted.get("bytes") == size else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
