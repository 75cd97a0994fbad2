"""ExportReader: one pass over an export, one conversation at a time."""

from __future__ import annotations

from typing import Iterator

from ...models.domain import Conversation, ExportSummary, ProfileHints
from .backend import require_c_backend
from .capped import Budget
from .chatgpt import ChatGPTConverter
from .claude import ClaudeConverter
from .errors import ExportError
from .hints import HintCollector
from .framing import iter_conversations
from .jsonstream import conversations_prefix, iter_items
from .limits import ParseLimits
from .nul import NulStripper
from .source import MAX_MANIFEST_BYTES, ExportSource, Member

# Errors in export_manifest.json that only mean "ignore the manifest": the
# conversations files are the content, the manifest is a table of contents.
_TOLERATED_MANIFEST_ERRORS = frozenset(("not_json", "truncated", "invalid_utf8", "bad_shape", "empty"))


class ExportReader:
    """Stream the conversations of a ChatGPT or claude.ai export.

    ``source`` is a path (str or Path) or a ``file://`` URI to a .zip, a .json
    file or an unpacked export folder. The source is opened and checked
    (existence, zip member names, declared sizes) at construction; content
    errors surface while iterating. Every failure is an ExportError.

    Iterating yields Conversation objects with at least one message, in file
    order, holding one conversation in memory at a time. Once iteration ends,
    ``summary`` is final and ``profile`` holds the hints found anywhere.
    Iterating again re-reads the export from the start.
    """

    def __init__(self, source, limits: ParseLimits | None = None) -> None:
        require_c_backend()
        self.limits = limits if limits is not None else ParseLimits()
        self.summary = ExportSummary()
        self.profile = ProfileHints()
        self._source = ExportSource(source, self.limits)

    @property
    def bytes_total(self) -> int:
        """Uncompressed JSON bytes the parse will read (declared sizes for a zip): progress' denominator."""
        return sum(m.size for m in self._source.members)

    def __iter__(self) -> Iterator[Conversation]:
        return self._run()

    def __enter__(self) -> "ExportReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._source.close()

    # ------------------------------------------------------------------ internals
    def _run(self) -> Iterator[Conversation]:
        src = self._source
        limits = self.limits
        summary = self.summary = ExportSummary()
        nul = NulStripper()
        hints = HintCollector(nul)
        self.profile = hints.profile
        budget = src.new_budget()
        chatgpt = ChatGPTConverter(limits.max_message_chars, hints, nul)
        claude = ClaudeConverter(limits.max_message_chars, nul)
        fmt = ""
        newest = None
        try:
            if src.manifest is not None:
                self._read_manifest(src.manifest, budget)
            for member in src.members:
                label = _label(src, member)
                prefix = conversations_prefix(
                    lambda m=member: src.open(m, self._sniff_budget()), label,
                    f"not a zip or JSON export: {label}" if src.kind == "file" else f"{label} is not JSON",
                )
                reader = src.open(member, budget)
                try:
                    index = 0
                    for item in iter_conversations(reader, prefix):
                        index += 1
                        if item.__class__ is not dict:
                            raise ExportError("bad_shape", f"item {index:,} of {reader.name} is not a conversation object")
                        if "mapping" in item:
                            converter, kind = chatgpt, "chatgpt"
                        elif "chat_messages" in item:
                            converter, kind = claude, "claude"
                        elif fmt:
                            converter, kind = (claude if fmt == "claude" else chatgpt), fmt
                        else:
                            raise ExportError(
                                "bad_shape",
                                f"item {index:,} of {reader.name} is neither a ChatGPT nor a claude.ai conversation",
                            )
                        if not fmt:
                            fmt = kind
                            summary.format = "chatgpt-split" if kind == "chatgpt" and src.split else kind
                        try:
                            conv = converter.convert(item)
                        except (AttributeError, TypeError, KeyError, ValueError) as e:
                            raise ExportError(
                                "bad_shape",
                                f"unexpected structure in item {index:,} of {reader.name}: "
                                f"{type(e).__name__}: {str(e)[:200]}",
                            ) from None
                        del item  # one conversation in memory at a time
                        summary.bytes_read = budget.used
                        summary.excluded = chatgpt.excluded
                        summary.hidden_messages = chatgpt.hidden
                        summary.nul_stripped = nul.count
                        summary.surrogates_replaced = budget.surrogates
                        if conv is None:
                            continue
                        msgs = conv.messages
                        if not msgs:
                            summary.empty += 1
                            continue
                        summary.conversations += 1
                        summary.messages += len(msgs)
                        t = conv.newest_time
                        if t is not None and (newest is None or t > newest):
                            newest = summary.newest_message_time = t
                        yield conv
                        del conv, msgs  # not kept while the next one is parsed
                finally:
                    reader.close()
            summary.bytes_read = budget.used
            summary.excluded = chatgpt.excluded
            summary.hidden_messages = chatgpt.hidden
            summary.nul_stripped = nul.count
            summary.surrogates_replaced = budget.surrogates
            if summary.conversations == 0:
                raise ExportError("empty", _empty_message(src.display, summary))
        finally:
            src.close()

    def _sniff_budget(self) -> Budget:
        # Sniffing re-reads the first KiB of a file: not counted as bytes read.
        return Budget(self.limits.max_uncompressed_bytes, "too_large", self._source.display)

    def _read_manifest(self, member: Member, budget: Budget) -> None:
        if member.size > MAX_MANIFEST_BYTES:
            return
        reader = self._source.open(member, budget)
        try:
            manifest = next(iter_items(reader, ""), None)
        except ExportError as e:
            if e.code in _TOLERATED_MANIFEST_ERRORS:
                return
            raise
        finally:
            reader.close()
        self._source.apply_manifest(listed_json_files(manifest))


def listed_json_files(value, depth: int = 0) -> list[str]:
    """Every string in the manifest that names a .json file, in document order."""
    out: list[str] = []
    if depth > 32:
        return out
    if isinstance(value, str):
        if value.lower().endswith(".json"):
            out.append(value)
    elif isinstance(value, dict):
        for v in value.values():
            out.extend(listed_json_files(v, depth + 1))
    elif isinstance(value, list):
        for v in value:
            out.extend(listed_json_files(v, depth + 1))
    return out


def _label(src: ExportSource, member: Member) -> str:
    return member.name if src.kind == "file" else f"{member.name} in {src.display}"


def _empty_message(display: str, summary: ExportSummary) -> str:
    seen = summary.empty + summary.excluded
    if not seen:
        return f"no conversations in {display}"
    return (f"no conversations with content in {display} "
            f"({summary.empty:,} empty, {summary.excluded:,} excluded as do-not-remember)")
