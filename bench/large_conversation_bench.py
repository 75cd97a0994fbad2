"""Peak RSS of `soulprint import` on an export holding one very large conversation.

    python bench/large_conversation_bench.py --size-mb 30 [--small 20] [--env KEY=VALUE ...]

Writes a ChatGPT export to a temporary folder: ``--small`` ordinary
conversations around one conversation of about ``--size-mb`` MB of JSON (a
single branch of turns, ~25 KB each). Then runs the real CLI (embedded stack,
offline provider, a fresh SOULPRINT_DATA_DIR) and samples the RSS of the
soulprint process alone every 50 ms: Postgres and the broker are separate
processes and not counted. Prints one JSON object: the peak, the wall time,
the exit code and the job's status and counts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import psutil

_WORDS = ("the of and to in is you that it he was for on are as with his they at be this have from "
          "café naïve Zürich 日本語 emoji🙂").split()


def conversation(cid: str, target_bytes: float, rng: random.Random) -> dict:
    mapping = {"root": {"id": "root", "message": None, "parent": None, "children": []}}
    parent, size, i = "root", 0, 0
    while size < target_bytes:
        nid = f"{cid}-{i}"
        text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(100, 600)))
        mapping[nid] = {"id": nid, "parent": parent, "children": [], "message": {
            "id": nid, "author": {"role": "user" if i % 2 == 0 else "assistant"}, "create_time": 1.7e9 + i,
            "content": {"content_type": "text", "parts": [text]}, "metadata": {}}}
        mapping[parent]["children"].append(nid)
        parent, size, i = nid, size + len(text.encode()) + 250, i + 1
    return {"title": cid, "create_time": 1.7e9, "update_time": 1.7e9 + i, "mapping": mapping,
            "current_node": parent, "conversation_id": cid}


def write_export(folder: Path, size_mb: float, small: int) -> Path:
    rng = random.Random(7)
    convs = [conversation(f"small-{n}", 20_000, rng) for n in range(small // 2)]
    convs.append(conversation("big", size_mb * 1e6, rng))
    convs += [conversation(f"small-{n}", 20_000, rng) for n in range(small // 2, small)]
    path = folder / "conversations.json"
    path.write_bytes(orjson.dumps(convs))
    return path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=float, default=30)
    ap.add_argument("--small", type=int, default=20, help="ordinary conversations beside the big one")
    ap.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for the CLI")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="soulprint-large-"))
    try:
        export = write_export(work, args.size_mb, args.small)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOULPRINT_")}
        env.update(SOULPRINT_DATA_DIR=str(work / "data"), SOULPRINT_LLM_PROVIDER="offline")
        env.update(kv.split("=", 1) for kv in args.env)
        cmd = [sys.executable, "-m", "soulprint.cli", "import", str(export), "--user", "bench", "--json"]
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        me = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            try:
                peak = max(peak, me.memory_info().rss)
            except psutil.NoSuchProcess:
                break
            time.sleep(0.05)
        out, err = proc.communicate()
        wall = time.monotonic() - started
        try:
            result = json.loads(out)
        except ValueError:
            result = {"error": err.strip().splitlines()[-1:] or [""]}
        print(json.dumps({
            "export_mb": round(export.stat().st_size / 1e6, 1),
            "big_conversation_mb": args.size_mb,
            "exit_code": proc.returncode,
            "peak_rss_mb": round(peak / 2**20),
            "wall_s": round(wall, 1),
            "status": result.get("status"),
            "error": result.get("error"),
            "counts": result.get("counts"),
        }, indent=2))
        return 0 if proc.returncode == 0 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
