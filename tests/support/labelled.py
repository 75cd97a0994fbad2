"""The labelled retrieval set (tests/fixtures/retrieval/labelled_set.json) as an export to import.

Its conversations are written in a compact form (id, title, messages with id,
role, time, text); ``write_export`` turns them into ChatGPT export
conversations and puts them among the shipped sample's, so the answers must be
found in a real-sized history, not in a handful of conversations.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LABELLED = REPO / "tests" / "fixtures" / "retrieval" / "labelled_set.json"
SAMPLE = REPO / "samples" / "sample-export.zip"


def load() -> dict:
    return json.loads(LABELLED.read_text())


def _chatgpt(conv: dict) -> dict:
    root = f"{conv['id']}-root"
    mapping = {root: {"id": root, "message": None, "parent": None, "children": []}}
    parent = root
    for m in conv["messages"]:
        mapping[parent]["children"].append(m["id"])
        mapping[m["id"]] = {
            "id": m["id"], "parent": parent, "children": [],
            "message": {"id": m["id"], "author": {"role": m["role"], "name": None, "metadata": {}},
                        "create_time": m["time"], "update_time": None,
                        "content": {"content_type": "text", "parts": [m["text"]]},
                        "status": "finished_successfully", "end_turn": True, "weight": 1.0, "metadata": {},
                        "recipient": "all"},
        }
        parent = m["id"]
    times = [m["time"] for m in conv["messages"]]
    return {"title": conv["title"], "create_time": min(times), "update_time": max(times), "mapping": mapping,
            "current_node": parent, "conversation_id": conv["id"], "id": conv["id"], "moderation_results": []}


def write_export(directory: Path, labelled: dict | None = None) -> Path:
    """The sample's conversations plus the labelled ones, as ``directory/conversations.json``."""
    labelled = labelled or load()
    with zipfile.ZipFile(SAMPLE) as z:
        conversations = json.loads(z.read("conversations.json"))
    conversations.extend(_chatgpt(c) for c in labelled["conversations"])
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "conversations.json").write_text(json.dumps(conversations, ensure_ascii=False))
    return directory
