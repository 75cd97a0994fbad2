"""GET /health: is the service able to answer, and with what (no token needed, nothing personal in it).

The upload service alone has neither an embedder nor an LLM: those fields are None then."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from soulprint.services.db import Database
from soulprint.services.db.pool import ping
from soulprint.services.embeddings import Embedder
from soulprint.services.kafka import broker_reachable
from soulprint.services.llm import LLMClient
from soulprint.settings import Settings


@dataclass(frozen=True)
class Health:
    settings: Settings  # where the broker is
    db: Database
    embedder: Embedder | None  # the current embedding space: the one searches use
    llm: LLMClient | None  # the answers' provider

    async def check(self) -> dict:
        """``status`` is "ok" when the database and the broker both answer, else "degraded"."""
        database, broker = await asyncio.gather(ping(self.db.pool), broker_reachable(self.settings))
        return {
            "status": "ok" if database and broker else "degraded",
            "database": database,
            "broker": broker,
            "embedding": self.embedder.space.space_id if self.embedder is not None else None,
            "llm": self.llm.provider if self.llm is not None else None,
            "offline": self.llm.offline if self.llm is not None else None,
        }
