"""The query service's view of one person's current soulprint (table query_soulprints).

Filled from the `sections` and `memory` topics by agents/query_view.py and
read through a reader session; ``to_json`` is the body of GET /v1/soulprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class SoulprintView:
    user_id: str
    job_id: str
    version: int  # 1 = quick pass, 2 = rewritten with MEMORY
    offline: bool  # made by the deterministic offline provider
    sections: dict[str, str]  # "SOUL", "IDENTITY", "USER", "AGENTS", "TOOLS" -> markdown
    memory_md: str | None
    made_at: datetime

    def to_json(self) -> dict:
        return {"user_id": self.user_id, "job_id": self.job_id, "version": self.version, "offline": self.offline,
                "made_at": self.made_at.isoformat(), "sections": dict(self.sections), "memory": self.memory_md}
