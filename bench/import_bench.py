"""Whole-process memory and time of a full `soulprint import` on the embedded stack.

    python bench/import_bench.py /tmp/bench/classic-300.zip [--env KEY=VALUE ...]

Runs the real CLI in a subprocess on a fresh data directory, samples the RSS
of the soulprint process itself (and, separately, of its children: Postgres
and the broker) every 100 ms, and prints the CLI's --json result beside the
peaks.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("export")
    ap.add_argument("--user", default="bench")
    ap.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for the CLI")
    args = ap.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="soulprint-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOULPRINT_")}
    env["SOULPRINT_DATA_DIR"] = str(data_dir)
    env.update(kv.split("=", 1) for kv in args.env)
    cmd = [sys.executable, "-m", "soulprint.cli", "import", args.export, "--user", args.user, "--json"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    me = psutil.Process(proc.pid)
    peak_self = peak_children = 0
    while proc.poll() is None:
        try:
            peak_self = max(peak_self, me.memory_info().rss)
            kids = me.children(recursive=True)
            peak_children = max(peak_children, sum(_rss(k) for k in kids))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    out, err = proc.communicate()
    wall = time.monotonic() - started
    shutil.rmtree(data_dir, ignore_errors=True)
    try:
        result = json.loads(out)
    except ValueError:
        print(f"import failed (exit {proc.returncode}): {err.strip()[-500:]}", file=sys.stderr)
        return 1
    report = {
        "export": args.export,
        "export_mb": round(Path(args.export).stat().st_size / 1e6, 1) if Path(args.export).is_file() else None,
        "exit_code": proc.returncode,
        "wall_s": round(wall, 1),
        "peak_rss_soulprint_mb": round(peak_self / 1e6, 1),
        "peak_rss_children_mb": round(peak_children / 1e6, 1),
        "status": result["status"],
        "quick_status": result["quick_status"],
        "full_pass_status": result["full_pass_status"],
        "counts": result["counts"],
        "durations_s": result["durations_s"],
        "full_pass_s": result["full_pass"]["duration_s"],
        "facts": result["full_pass"]["facts"],
    }
    print(json.dumps(report, indent=2))
    return 0


def _rss(p: psutil.Process) -> int:
    try:
        return p.memory_info().rss
    except psutil.NoSuchProcess:
        return 0


if __name__ == "__main__":
    sys.exit(main())
