"""Log records: the job and stage they belong to, one JSON object per line, and no secret in any of them.

``job_context(job_id, stage)`` wraps one event's work in an agent
(agents/containment.py); every record made inside it, by whatever logger,
carries both fields. ``install(handler, fmt)`` is what the CLI does to each of
its handlers: the format (``text`` for a terminal, ``json`` for a log
collector: SOULPRINT_LOG_FORMAT), the context fields, and the redaction filter.
``redact(text)`` is the same redaction for text that leaves the process
otherwise: HTTP error messages, an LLM error line stored on a job.

Redaction runs on every handler, after the message is formatted from its
arguments, so a secret passed as an argument is caught as well as one written
into the message; tracebacks are redacted too (an SDK's exception may quote a
key). What it removes: person tokens (``sp_<id>_<secret>``: the id, which is not
secret, stays), any ``Bearer`` credential, ``whsec_`` webhook secrets,
Anthropic keys (``sk-ant-``), AWS secret access keys and session tokens (by
their shape and by the names they travel under), and the literal values the
process was configured with (``remember_secrets``: the operator token, the API key).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
from datetime import datetime, timezone
from typing import Iterator

import orjson

JOB_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("soulprint_job_id", default=None)
STAGE: contextvars.ContextVar[str | None] = contextvars.ContextVar("soulprint_stage", default=None)

REDACTED = "[redacted]"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextlib.contextmanager
def job_context(job_id: str | None, stage: str | None) -> Iterator[None]:
    job_token, stage_token = JOB_ID.set(job_id), STAGE.set(stage)
    try:
        yield
    finally:
        JOB_ID.reset(job_token)
        STAGE.reset(stage_token)


def _aws_secret(match: re.Match) -> str:
    """A 40-character base64 word is an AWS secret key when it mixes cases and digits (a hex digest does not)."""
    word = match.group(0)
    looks_secret = any(c.isupper() for c in word) and any(c.islower() for c in word) and any(
        c.isdigit() or c in "+/" for c in word)
    return REDACTED if looks_secret else word


# (pattern, replacement): each replacement keeps what names the secret and drops the secret itself.
_PATTERNS: tuple[tuple[re.Pattern, object], ...] = (
    (re.compile(r"\b(sp_[0-9a-f]{16}_)[A-Za-z0-9_-]+"), r"\1" + REDACTED),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+"), "whsec_" + REDACTED),
    (re.compile(r"\bsk-ant-[A-Za-z0-9_-]+"), "sk-ant-" + REDACTED),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + REDACTED),
    (re.compile(r"(?i)\b((?:aws_)?(?:secret_?access_?key|session_?token)|x-amz-security-token)"
                r"([\"']?\s*[:=]\s*[\"']?)[^\s,;'\"&}]+"), r"\1\2" + REDACTED),
    # Session (STS) tokens: long base64 that starts with the same serialised header.
    (re.compile(r"\b(?:FwoGZXIvYXdz|IQoJb3JpZ2lu)[A-Za-z0-9+/=]+"), REDACTED),
    (re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=])"), _aws_secret),
)


# The literal secrets this process was configured with (remember_secrets), longest first so that a
# secret containing another is removed whole.
_KNOWN: list[str] = []


def remember_secrets(*values: str | None) -> None:
    """Values to remove wherever they appear (the operator token, the API key), besides the patterns."""
    _KNOWN[:] = sorted(set(_KNOWN) | {v for v in values if v}, key=len, reverse=True)


def redact(text: str) -> str:
    """``text`` without the secrets this module knows of: for log lines, and for any message that leaves
    the process (an error answered over HTTP, a job's error line)."""
    for secret in _KNOWN:
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class Redactor(logging.Filter):
    """Removes secrets from a record's message (formatted with its args) and its traceback, in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - arguments that do not fit: logging reports it when it formats
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class WithContext(logging.Filter):
    """Stamps the job and stage of the current context on the record (``job_id``, ``stage``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = JOB_ID.get()
        if getattr(record, "stage", None) is None:
            record.stage = STAGE.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ts, level, logger, message, job_id and stage when set, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("job_id", "stage"):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return orjson.dumps(entry, default=str).decode()


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def install(handler: logging.Handler, fmt: str) -> logging.Handler:
    """``handler`` with the format ``fmt`` ("text" | "json"), the context fields and redaction."""
    handler.setFormatter(formatter(fmt))
    handler.addFilter(WithContext())
    handler.addFilter(Redactor())
    return handler
