"""ChatGPT conversations (classic conversations.json and the 2026 split files).

A conversation is a tree (``mapping`` of node id -> {message, parent}); what
the person saw is the path from the root to ``current_node``. Branches off it
(regenerated answers, edited questions) are not content. Only ``parent`` links
are used, so the 2026 layout, whose nodes have no ``children``, needs nothing
special.

This runs once per message of exports with millions of them: plain dict.get
chains, locals, no regexes, no intermediate copies.
"""

from __future__ import annotations

import hashlib

from ...models.domain import Conversation, Message
from .errors import ExportError
from .hints import HintCollector, memory_entries
from .nul import NUL, NulStripper

_ROLES = frozenset(("user", "assistant", "tool"))
# Content types that are the model's hidden reasoning, not conversation.
_REASONING = frozenset(("thoughts", "reasoning_recap"))
# What the person told ChatGPT about themselves (custom instructions, saved memory): hints, not turns.
_CONTEXT = frozenset(("user_editable_context", "model_editable_context"))
_AUDIO = frozenset(("audio_asset_pointer", "real_time_user_audio_video_asset_pointer"))
_MS_THRESHOLD = 1e11  # seconds reach 1e11 in the year 5138; milliseconds passed it in 1973


def seconds(value) -> float | None:
    """Unix time in seconds from seconds or milliseconds (or None)."""
    if value is None or value is True or value is False:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if value != value:  # NaN
        return None
    return value / 1000.0 if value > _MS_THRESHOLD else value


def conversation_id(conv: dict, title, created, clean) -> str:
    """The export's own id (NUL characters cleaned off), else a hash of title and time."""
    cid = clean(conv.get("conversation_id") or conv.get("id"))
    if isinstance(cid, str):
        if cid:
            return cid
    elif cid is not None and not isinstance(cid, (dict, list)):
        return str(cid)
    # Deterministic, so re-importing the same export maps to the same rows.
    digest = hashlib.sha256(f"{title}\x00{created}".encode("utf-8", "replace")).hexdigest()
    return f"chatgpt-{digest[:32]}"


def describe(cid: str, title) -> str:
    return f"{title!r} ({cid})" if title else cid


class ChatGPTConverter:
    """Turns one ChatGPT conversation dict into a Conversation (or None)."""

    def __init__(self, max_message_chars: int, hints: HintCollector, nul: NulStripper) -> None:
        self.max_chars = max_message_chars
        self.hints = hints
        self.nul = nul
        self.excluded = 0  # is_do_not_remember
        self.hidden = 0  # hidden messages on active paths

    def convert(self, conv: dict) -> Conversation | None:
        if conv.get("is_do_not_remember") is True:
            self.excluded += 1
            return None
        clean = self.nul.clean
        title = clean(conv.get("title")) or None
        created = seconds(conv.get("create_time"))
        updated = seconds(conv.get("update_time"))
        cid = conversation_id(conv, title, created, clean)
        mapping = conv.get("mapping")
        if not isinstance(mapping, dict) or not mapping:
            return Conversation(cid, title, created, updated, "chatgpt", [])
        path = active_path(mapping, conv.get("current_node"), cid, title)
        messages = self._messages(path, cid, title, updated if updated is not None else created)
        return Conversation(cid, title, created, updated, "chatgpt", messages)

    def _messages(self, path: list, cid: str, title, when) -> list[Message]:
        out: list[Message] = []
        append = out.append
        max_chars = self.max_chars
        clean = self.nul.clean
        for node in path:
            msg = node.get("message")
            if not msg:
                continue  # the null-message root
            content = msg.get("content")
            if not content:
                continue
            meta = msg.get("metadata")
            if meta and meta.get("is_visually_hidden_from_conversation") is True:
                # Not shown in the chat; may still carry custom instructions or memory.
                self.hidden += 1
                self._hidden_hints(meta, content, when)
                continue
            ctype = content.get("content_type")
            if ctype == "text":
                parts = content.get("parts")
                if parts and len(parts) == 1 and parts[0].__class__ is str:
                    text = parts[0]
                else:
                    text = parts_text(parts) if parts else ""
            elif ctype in _REASONING:
                continue
            elif ctype in _CONTEXT:
                self._context_hints(ctype, content, when)
                continue
            else:
                text = other_text(ctype, content)
            author = msg.get("author")
            role = author.get("role") if author else None
            if role not in _ROLES:
                # System prompts are not turns; old-style custom instructions ride on them.
                if meta and role == "system":
                    self._custom_instructions(meta.get("user_context_message_data"), when)
                continue
            if NUL in text:
                text = clean(text)
            if not text or text.isspace():
                continue
            if len(text) > max_chars:
                raise ExportError(
                    "message_too_large",
                    f"a message in conversation {describe(cid, title)} has {len(text):,} characters, "
                    f"more than {max_chars:,} (limit max_message_chars)",
                )
            t = msg.get("create_time")
            if t is not None and (t.__class__ is not float or t > _MS_THRESHOLD):
                t = seconds(t)
            mid = msg.get("id") or node.get("id") or ""
            if mid.__class__ is not str or NUL in mid:  # the call only when it may do something
                mid = clean(mid)
            append(Message(mid, role, text, t))
        return out

    def _hidden_hints(self, meta: dict, content: dict, when) -> None:
        ctype = content.get("content_type")
        if ctype in _CONTEXT:
            self._context_hints(ctype, content, when)
        custom = meta.get("user_context_message_data")
        if custom:  # offered last: the raw text wins over the wrapped copy in the content
            self._custom_instructions(custom, when)

    def _custom_instructions(self, custom, when) -> None:
        # Old-style custom instructions: metadata of a (hidden) system message.
        if custom and isinstance(custom, dict):
            self.hints.offer("user_profile", custom.get("about_user_message"), when)
            self.hints.offer("user_instructions", custom.get("about_model_message"), when)

    def _context_hints(self, ctype: str, content: dict, when) -> None:
        if ctype == "user_editable_context":
            self.hints.offer("user_profile", content.get("user_profile"), when)
            self.hints.offer("user_instructions", content.get("user_instructions"), when)
        else:
            self.hints.offer_memory(memory_entries(content), when)


def active_path(mapping: dict, current, cid: str, title) -> list:
    """Nodes from the root to ``current_node`` (or the most recent leaf), root first."""
    get = mapping.get
    node = get(current) if current.__class__ is str else None
    if node is None:
        node = latest_leaf(mapping, cid, title)
    path = [node]
    limit = len(mapping)
    parent = node.get("parent")
    while parent is not None:
        node = get(parent)
        if node is None:
            raise ExportError(
                "dangling_parent",
                f"conversation {describe(cid, title)} names parent node {parent!r}, which is not in its mapping",
            )
        path.append(node)
        if len(path) > limit:  # longer than the tree itself: the parent links loop
            raise ExportError("cyclic_tree", f"conversation {describe(cid, title)} has a loop in its parent links")
        parent = node.get("parent")
    path.reverse()
    return path


def latest_leaf(mapping: dict, cid: str, title) -> dict:
    """The node nobody names as parent with the newest message; the last one on ties."""
    parents = {node.get("parent") for node in mapping.values()}
    best = None
    best_time = float("-inf")
    for key, node in mapping.items():
        if key in parents:
            continue
        msg = node.get("message")
        t = seconds(msg.get("create_time")) if msg else None
        t = float("-inf") if t is None else t
        if best is None or t >= best_time:
            best, best_time = node, t
    if best is None:  # every node is someone's parent: the links go round
        raise ExportError("cyclic_tree", f"conversation {describe(cid, title)} has a loop in its parent links")
    return best


def parts_text(parts) -> str:
    """``parts`` of text / multimodal_text: strings kept, media as placeholders."""
    out = []
    transcribed = False
    audio = False
    for part in parts:
        if part.__class__ is str:
            if part:
                out.append(part)
        elif part.__class__ is dict:
            kind = part.get("content_type")
            if kind == "image_asset_pointer":
                out.append("[image]")
            elif kind == "audio_transcription":
                text = part.get("text")
                if text:
                    out.append(text)
                    transcribed = True
            elif kind in _AUDIO:
                audio = True
                out.append("[audio]")
    if audio and transcribed:
        # Voice turns carry the recording and its transcript: the words are the content.
        out = [p for p in out if p != "[audio]"]
    return "\n".join(out)


def other_text(ctype, content: dict) -> str:
    """Every content type but plain text (rare enough to afford a function call)."""
    if ctype == "multimodal_text":
        parts = content.get("parts")
        return parts_text(parts) if parts else ""
    if ctype == "code" or ctype == "execution_output" or ctype == "system_error":
        text = content.get("text")
        return text if text.__class__ is str else ""
    if ctype == "tether_quote":
        text = content.get("text")
        text = text if text.__class__ is str else ""
        title = content.get("title")
        return f"{title}\n{text}" if title.__class__ is str and title else text
    if ctype == "tether_browsing_display":
        result = content.get("result")
        return result if result.__class__ is str else ""
    # Unknown or future types: keep whatever text they carry rather than drop it.
    parts = content.get("parts")
    if parts.__class__ is list:
        return parts_text(parts)
    for key in ("text", "result"):
        value = content.get(key)
        if value.__class__ is str:
            return value
    return ""
