"""Writing a person's soulprint out: an OpenClaw agent workspace, or one JSON document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WORKSPACE_FILES = (
    ("SOUL.md", "soul_md"),
    ("IDENTITY.md", "identity_md"),
    ("USER.md", "user_md"),
    ("AGENTS.md", "agents_md"),
    ("TOOLS.md", "tools_md"),
)
FORMATS = ("openclaw", "json")


def export_soulprint(row: dict[str, Any], out_dir: Path, fmt: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        path = out_dir / f"soulprint-{_safe(row['user_id'])}.json"
        _write(path, json.dumps(soulprint_document(row), indent=2, ensure_ascii=False) + "\n")
        return [path]
    written = []
    for name, column in WORKSPACE_FILES:
        written.append(_write(out_dir / name, _md(row[column])))
    if row.get("memory_md"):  # only once the full pass has written one
        written.append(_write(out_dir / "MEMORY.md", _md(row["memory_md"])))
    return written


def soulprint_document(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "user_id": row["user_id"],
        "job_id": row["job_id"],
        "version": row["version"],
        "offline": row["offline"],
        "updated_at": row["updated_at"].isoformat() if row.get("updated_at") else None,
        "sections": row["sections"],
        "markdown": {name[:-3]: row[column] for name, column in WORKSPACE_FILES},
        "memory": row.get("memory_md"),
        "soulprint_text": row["soulprint_text"],
    }


def _md(text: str) -> str:
    return text.rstrip() + "\n"


def _write(path: Path, text: str) -> Path:
    # Write then rename: a reader of the workspace never sees half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "user"
