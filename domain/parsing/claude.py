"""claude.ai conversations: the bulk export array and the single-object web-app shape.

Each conversation has ``chat_messages`` in order, each with ``sender``
human/assistant and ``content`` blocks (text, thinking, tool_use,
tool_result) and/or a flat ``text``. Thinking is the model's reasoning, not
conversation, and is left out.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

from ...models.domain import Conversation, Message
from .chatgpt import describe
from .errors import ExportError
from .nul import NUL, NulStripper

_ROLES = {"human": "user", "user": "user", "assistant": "assistant"}
_NULL_PARENT = "00000000-0000-4000-8000-000000000000"  # claude.ai's root sentinel
_fromisoformat = datetime.fromisoformat  # C; accepts "Z" since Python 3.11
TOOL_INPUT_CHARS = 200  # tool_use inputs are abbreviated: the call, not its payload


def iso_seconds(value) -> float | None:
    """ISO 8601 string (``...Z`` or with offset; naive means UTC) -> unix seconds."""
    if value.__class__ is str:
        try:
            dt = _fromisoformat(value)
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) / 1000.0 if value > 1e11 else float(value)
    return None


class ClaudeConverter:
    def __init__(self, max_message_chars: int, nul: NulStripper) -> None:
        self.max_chars = max_message_chars
        self.nul = nul

    def convert(self, conv: dict) -> Conversation:
        clean = self.nul.clean
        title = clean(conv.get("name")) or None
        created = iso_seconds(conv.get("created_at"))
        updated = iso_seconds(conv.get("updated_at"))
        cid = clean(conv.get("uuid"))
        if not isinstance(cid, str) or not cid:
            digest = hashlib.sha256(f"{title}\x00{conv.get('created_at')}".encode("utf-8", "replace")).hexdigest()
            cid = f"claude-{digest[:32]}"
        raw = conv.get("chat_messages")
        if not isinstance(raw, list):
            raw = []
        messages: list[Message] = []
        roles = _ROLES
        for m in active_branch(raw, conv.get("current_leaf_message_uuid")):
            if m.__class__ is not dict:
                continue
            role = roles.get(m.get("sender"))
            if role is None:
                continue
            text = message_text(m)
            if NUL in text:
                text = clean(text)
            if not text or text.isspace():
                continue
            if len(text) > self.max_chars:
                raise ExportError(
                    "message_too_large",
                    f"a message in conversation {describe(cid, title)} has {len(text):,} characters, "
                    f"more than {self.max_chars:,} (limit max_message_chars)",
                )
            mid = m.get("uuid") or ""
            if mid.__class__ is not str or NUL in mid:
                mid = clean(mid)
            messages.append(Message(mid, role, text, iso_seconds(m.get("created_at"))))
        return Conversation(cid, title, created, updated, "claude", messages)


def active_branch(messages: list, leaf) -> list:
    """The web-app shape lists every branch; keep the path to ``current_leaf_message_uuid``.

    Bulk exports have no parent links: all messages, in order. A broken chain
    (a parent not in the list) stops the walk there rather than failing.
    """
    if not isinstance(leaf, str) or not any(isinstance(m, dict) and m.get("parent_message_uuid") for m in messages):
        return messages
    by_id = {m.get("uuid"): m for m in messages if isinstance(m, dict)}
    if leaf not in by_id:
        return messages
    keep: set[str] = set()
    node = leaf
    while node in by_id and node not in keep:
        keep.add(node)
        node = by_id[node].get("parent_message_uuid")
        if node == _NULL_PARENT:
            break
    return [m for m in messages if isinstance(m, dict) and m.get("uuid") in keep]


def message_text(m: dict) -> str:
    blocks = m.get("content")
    if blocks.__class__ is list and len(blocks) == 1 and not m.get("attachments") and not m.get("files"):
        # The usual message: one text block and nothing attached.
        block = blocks[0]
        if block.__class__ is dict and block.get("type") == "text":
            text = block.get("text")
            if text.__class__ is str and text:
                return text
    pieces: list[str] = []
    structured = False  # saw thinking/tool blocks: the flat text may repeat them
    if isinstance(blocks, list):
        for block in blocks:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text":
                text = block.get("text")
                if isinstance(text, str) and text:
                    pieces.append(text)
            elif kind == "tool_use":
                structured = True
                pieces.append(tool_use_text(block))
            elif kind == "tool_result":
                structured = True
                text = tool_result_text(block.get("content"))
                if text:
                    pieces.append(text)
            elif kind in ("thinking", "redacted_thinking"):
                structured = True
    if not pieces and not structured:
        flat = m.get("text")
        if isinstance(flat, str) and flat:
            pieces.append(flat)
    for att in m.get("attachments") or ():
        if isinstance(att, dict):
            extracted = att.get("extracted_content")
            if isinstance(extracted, str) and extracted.strip():
                pieces.append(f"[attachment: {att.get('file_name') or 'file'}]\n{extracted}")
    for f in m.get("files") or ():
        if isinstance(f, dict):
            pieces.append(f"[file: {f.get('file_name') or 'file'}]")
    if len(pieces) == 1:
        return pieces[0]
    return "\n\n".join(pieces)


def tool_use_text(block: dict) -> str:
    name = block.get("name") or "tool"
    payload = block.get("input")
    if payload is None:
        return f"[tool: {name}]"
    try:
        arg = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        arg = str(payload)
    if len(arg) > TOOL_INPUT_CHARS:
        arg = arg[: TOOL_INPUT_CHARS - 1] + "\u2026"
    return f"[tool: {name}] {arg}"


def tool_result_text(content) -> str:
    """tool_result content: a string or a list of blocks of which the text ones count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [b.get("text") for b in content if isinstance(b, dict) and b.get("type") == "text"]
        return "\n".join(t for t in texts if isinstance(t, str) and t)
    return ""
