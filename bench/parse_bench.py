#!/usr/bin/env python3
"""Parse benchmark: SoulPrint's streaming export parser against json and orjson.

    python bench/parse_bench.py /tmp/bench/classic.json [--repeat 3] [--json]

Contenders, all on the same input in the same run:

* ``soulprint``: ``soulprint.domain.parsing.ExportReader(path)`` iterated to the
  end (it reads the zip / split folder / JSON file itself).
* ``json.load``: the standard library on the conversation JSON.
* ``orjson.loads``: read the bytes, then ``orjson.loads``.

For a zip or a split-layout folder the baselines parse the conversation
files' JSON (``conversations.json`` or ``conversations-NNN.json``), all of it,
keeping every parsed file alive, i.e. what loading the concatenated JSON would
cost.  The MB/s of every contender is computed over those same uncompressed
bytes, and the time includes reading them (and unzipping, for a zip).

Each contender runs in its own subprocess so that its peak RSS
(``ru_maxrss`` of that child) is its own.  The page cache is warmed first so
the first contender is not charged for the disk.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

CONTENDERS = ("soulprint", "json", "orjson")
LABELS = {"soulprint": "soulprint ExportReader", "json": "json.load", "orjson": "orjson.loads"}
RESULT_MARK = "PARSE_BENCH_RESULT "
_SPLIT_NAME = re.compile(r"(^|/)conversations-\d+\.json$")


# ---------------------------------------------------------------- input

class Source:
    """The conversation JSON inside a .json file, a .zip or a split folder."""

    def __init__(self, path: Path):
        self.path = path
        self.zip = path.is_file() and zipfile.is_zipfile(path)
        if self.zip:
            with zipfile.ZipFile(path) as zf:
                self.members = self._pick([i.filename for i in zf.infolist()],
                                          lambda n: zf.read(n))
                self.bytes = sum(zf.getinfo(n).file_size for n in self.members)
            self.kind = "zip"
        elif path.is_dir():
            names = [p.relative_to(path).as_posix() for p in path.rglob("*.json")]
            self.members = self._pick(names, lambda n: (path / n).read_bytes())
            self.bytes = sum((path / n).stat().st_size for n in self.members)
            self.kind = "folder"
        elif path.is_file():
            self.members = [path.name]
            self.bytes = path.stat().st_size
            self.kind = "json"
        else:
            raise SystemExit(f"parse_bench: {path} does not exist")
        if not self.members:
            raise SystemExit(f"parse_bench: no conversations.json or conversations-NNN.json in {path}")
        self.layout = "split" if any(_SPLIT_NAME.search(n) for n in self.members) else "classic"

    @staticmethod
    def _pick(names: list[str], read) -> list[str]:
        # The 2026 layout lists its files in export_manifest.json; fall back to
        # the file names when there is none.
        manifests = [n for n in names if n.rsplit("/", 1)[-1] == "export_manifest.json"]
        if manifests:
            manifest = json.loads(read(manifests[0]))
            base = manifests[0].rsplit("/", 1)[0] + "/" if "/" in manifests[0] else ""
            files = [f if isinstance(f, str) else f.get("name") or f.get("path") for f in manifest.get("files", [])]
            files = [base + f for f in files if f]
            if files:
                return files
        split = sorted(n for n in names if _SPLIT_NAME.search(n))
        if split:
            return split
        return [n for n in names if n.rsplit("/", 1)[-1] == "conversations.json"][:1]

    def open_member(self, name: str):
        if self.zip:
            zf = zipfile.ZipFile(self.path)
            return zf.open(name)
        if self.kind == "folder":
            return open(self.path / name, "rb")
        return open(self.path, "rb")

    def describe(self) -> str:
        what = {"zip": "zip", "folder": "folder", "json": "file"}[self.kind]
        if self.kind == "json":
            return f"{self.path} ({self.layout} layout, one JSON file, {self.bytes / 1048576:.1f} MB)"
        return (f"{self.path} ({self.layout} layout {what}; baselines parse the concatenated JSON of "
                f"{len(self.members)} conversation file(s), {self.bytes / 1048576:.1f} MB uncompressed)")

    def warm(self) -> None:
        """Read the input once so every contender starts with it in the page cache."""
        paths = [self.path] if self.path.is_file() else [self.path / n for n in self.members]
        for p in paths:
            with open(p, "rb") as f:
                while f.read(1 << 24):
                    pass


# ---------------------------------------------------------------- child side

def _rss_now_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1048576
    except OSError:
        return float("nan")


def _peak_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1048576 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KB on Linux


def _count_raw(parsed: list) -> tuple[int, int]:
    conversations = nodes = 0
    for part in parsed:
        items = part if isinstance(part, list) else [part]
        conversations += len(items)
        for conv in items:
            mapping = conv.get("mapping") if isinstance(conv, dict) else None
            if mapping:
                nodes += sum(1 for n in mapping.values() if n.get("message") is not None)
            elif isinstance(conv, dict) and "chat_messages" in conv:
                nodes += len(conv["chat_messages"])
    return conversations, nodes


def child(contender: str, path: Path, no_gc: bool = False) -> dict:
    source = Source(path)
    result = {"contender": contender, "bytes": source.bytes, "gc": not no_gc}
    if no_gc:
        # Building millions of dicts triggers the cyclic GC over and over; it
        # is over half of json/orjson's time on a 300 MB export.  Off shows
        # the parsing cost alone, on is what a program pays by default.
        import gc

        gc.disable()
    if contender == "soulprint":
        from soulprint.domain.parsing import ExportReader

        result["start_rss_mb"] = _rss_now_mb()
        t0 = time.perf_counter()
        reader = ExportReader(path)
        conversations = messages = 0
        for conv in reader:
            conversations += 1
            messages += len(getattr(conv, "messages", ()) or ())
        result["seconds"] = time.perf_counter() - t0
        summary = getattr(reader, "summary", None)
        result["conversations"] = getattr(summary, "conversations", conversations)
        result["messages"] = getattr(summary, "messages", messages)
        result["counted"] = {"conversations": conversations, "messages": messages}
        if summary is not None:
            result["summary"] = {k: getattr(summary, k) for k in ("format", "excluded", "empty", "hidden_messages",
                                                                    "nul_stripped", "bytes_read")
                                 if hasattr(summary, k)}
    else:
        import orjson

        result["start_rss_mb"] = _rss_now_mb()
        parsed = []  # kept alive: the baseline holds the whole export, as json.load(everything) would
        read_s = 0.0
        t0 = time.perf_counter()
        for name in source.members:
            with source.open_member(name) as fh:
                if contender == "json":
                    parsed.append(json.load(fh))
                else:
                    t_read = time.perf_counter()
                    data = fh.read()
                    read_s += time.perf_counter() - t_read
                    parsed.append(orjson.loads(data))
                    del data
        result["seconds"] = time.perf_counter() - t0
        if contender == "orjson":
            result["read_seconds"] = read_s
        result["conversations"], result["messages"] = _count_raw(parsed)  # outside the timed region
        result["messages_are"] = "raw nodes with a message"
    result["peak_rss_mb"] = _peak_rss_mb()
    return result


# ---------------------------------------------------------------- parent side

def run_child(contender: str, path: Path, no_gc: bool = False) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), str(path), "--child", contender]
    if no_gc:
        cmd.append("--no-gc")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
    return {"contender": contender, "error": f"exit {proc.returncode}", "detail": "\n".join(tail)}


def check_parser() -> str | None:
    """None if the project's parser imports, else the reason."""
    code = "from soulprint.domain.parsing import ExportReader"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit {proc.returncode}"


def summarise(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"contender": runs[0]["contender"], "error": runs[0]["error"], "detail": runs[0].get("detail")}
    best = min(ok, key=lambda r: r["seconds"])
    out = dict(best)
    out["runs"] = len(ok)
    out["seconds_all"] = [round(r["seconds"], 3) for r in ok]
    out["seconds_median"] = statistics.median(r["seconds"] for r in ok)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ok)
    out["mb_per_s"] = best["bytes"] / 1048576 / best["seconds"] if best["seconds"] else None
    return out


def print_table(source: Source, results: list[dict]) -> None:
    print(f"input: {source.describe()}")
    gc_state = "on" if results[0].get("gc", True) else "off (--no-gc)"
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s); best of {results[0].get('runs', 1)} run(s), "
          f"each contender in its own process; cyclic GC {gc_state}\n")
    header = f"{'contender':<24} {'seconds':>8} {'MB/s':>8} {'peak RSS MB':>12} {'start RSS MB':>13} " \
             f"{'conversations':>14} {'messages':>10}"
    print(header)
    print("-" * len(header))
    for r in results:
        label = LABELS[r["contender"]]
        if "error" in r:
            print(f"{label:<24} failed: {r['error']}")
            continue
        print(f"{label:<24} {r['seconds']:>8.2f} {r['mb_per_s']:>8.1f} {r['peak_rss_mb']:>12.0f} "
              f"{r['start_rss_mb']:>13.0f} {r['conversations']:>14,} {r['messages']:>10,}")
    print("\nMB/s is over the uncompressed conversation JSON; baselines' messages are raw mapping nodes with a "
          "message,\nthe parser's are the messages it emits (active branch, visible turns only).")
    for r in results:
        if "error" in r and r.get("detail"):
            print(f"\n{LABELS[r['contender']]} failed:\n{r['detail']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="an export: .json, .zip, or a split-layout folder")
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender; the best time is reported")
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help=f"comma-separated subset of {','.join(CONTENDERS)}")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
    parser.add_argument("--no-gc", action="store_true",
                        help="disable Python's cyclic GC in every contender (default: on, as in production)")
    args = parser.parse_args(argv)

    if args.child:
        result = child(args.child, args.path, args.no_gc)
        sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
        return 0

    contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
    unknown = set(contenders) - set(CONTENDERS)
    if unknown or not contenders:
        parser.error(f"unknown contender(s) {sorted(unknown)}; choose from {','.join(CONTENDERS)}")
    source = Source(args.path)
    if "soulprint" in contenders:
        reason = check_parser()
        if reason:
            sys.stderr.write(
                "parse_bench: the project's parser is not importable "
                f"(from soulprint.domain.parsing import ExportReader: {reason}).\n"
                "Install the project (pip install -e .) or measure the baselines only with "
                "--contenders json,orjson\n")
            return 2
    source.warm()
    results = []
    for contender in contenders:
        runs = [run_child(contender, args.path, args.no_gc) for _ in range(max(1, args.repeat))]
        results.append(summarise(runs))
    if args.json:
        print(json.dumps({"input": str(args.path), "kind": source.kind, "layout": source.layout, "gc": not args.no_gc,
                          "json_bytes": source.bytes, "files": source.members, "results": results}, indent=2))
    else:
        print_table(source, results)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
