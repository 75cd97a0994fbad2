"""A conversation's content fingerprint: equal fingerprints, equal chunks.

A re-import reuses the chunks, embeddings and facts of every conversation
whose fingerprint equals the one stored with the person's current import
(docs/design.md, "Incremental re-import"). So the fingerprint covers exactly
what the chunks are a function of: the title (every chunk's header), each
message's id, role, text and time (chunk text, message_ids, message_at), the
chunking configuration, and CHUNKING_VERSION. The conversation's own
created/updated times are not in it: no chunk depends on them, and the new
import stores them afresh.
"""

from __future__ import annotations

import dataclasses
import hashlib

import orjson

from soulprint.domain.chunking import ChunkingConfig
from soulprint.models.domain import Conversation

# Bump when domain/chunking.py cuts the same conversation differently: every
# stored fingerprint then differs and re-imports chunk everything again.
CHUNKING_VERSION = 1


def conversation_fingerprint(conv: Conversation, config: ChunkingConfig) -> str:
    """sha256 hex over the conversation's chunked content and how it is cut."""
    h = hashlib.sha256(orjson.dumps({
        "v": CHUNKING_VERSION,
        "config": dataclasses.asdict(config),
        "title": conv.title,
    }))
    for m in conv.messages:  # streamed: a 30 MB conversation is never serialised whole
        h.update(b"\x1e")
        h.update(orjson.dumps([m.id, m.role, m.text, m.time]))
    return h.hexdigest()
