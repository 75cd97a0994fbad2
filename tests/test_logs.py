"""Log lines: the JSON format (one object per line, the job and stage of the context), and redaction.

Redaction is checked on the handlers the CLI installs (services/logs.install)
and on the text that leaves the process otherwise: an HTTP error message, an
LLM provider's error line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from soulprint import cli
from soulprint.models.llm import LLMRequest
from soulprint.services.http.errors import message_of
from soulprint.services.llm.base import RemoteLLMClient, TransportError
from soulprint.services.llm.config import LLMConfig
from soulprint.services.llm.ratelimit import AdaptiveLimiter
from soulprint.services.logs import REDACTED, install, job_context, redact, remember_secrets
from soulprint.settings import load_settings

ANTHROPIC_KEY = "sk-ant-api03-Zq8x_7Kf2LmN9pQrS-tUvWxYz0123456789abcdefAA"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_SESSION = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQDexample+token/value=="
PERSON_TOKEN = "sp_0123456789abcdef_Zx9aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789-_ab"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ADMIN = "operator-token-for-the-log-tests-0123456789"


def records(stream) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def json_logger():
    """A logger writing JSON lines through the CLI's handler setup into a buffer."""
    import io

    buffer = io.StringIO()
    handler = install(logging.StreamHandler(buffer), "json")
    logger = logging.getLogger("soulprint.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, buffer
    logger.removeHandler(handler)


def test_json_lines_carry_the_job_and_stage_of_their_context(json_logger):
    log, buffer = json_logger
    with job_context("job-1", "facts"):
        log.info("extracted %d facts", 3)
    log.warning("outside any job")
    inside, outside = records(buffer)
    assert inside["message"] == "extracted 3 facts" and inside["level"] == "INFO"
    assert inside["logger"] == "soulprint.test_logs"
    assert (inside["job_id"], inside["stage"]) == ("job-1", "facts")
    assert inside["ts"].endswith("+00:00")
    assert "job_id" not in outside and "stage" not in outside


def test_an_exception_is_one_string_on_the_same_line(json_logger):
    log, buffer = json_logger
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        log.exception("it failed")
    assert len(buffer.getvalue().splitlines()) == 1
    (entry,) = records(buffer)
    assert entry["message"] == "it failed"
    assert entry["exc"].startswith("Traceback") and "ValueError: bad\nthing" in entry["exc"]


def test_secrets_are_removed_from_messages_arguments_and_tracebacks(json_logger):
    log, buffer = json_logger
    remember_secrets(ADMIN)
    log.info("key %s token %s", ANTHROPIC_KEY, PERSON_TOKEN)
    log.info(f"webhook {WEBHOOK_SECRET} aws_secret_access_key={AWS_SECRET} session {AWS_SESSION}")
    log.info("Authorization: Bearer %s", ADMIN)
    try:
        raise RuntimeError(f"provider said: invalid key {ANTHROPIC_KEY}; secret {AWS_SECRET}")
    except RuntimeError:
        log.exception("call failed for %s", "x-amz-security-token=" + AWS_SESSION)
    out = buffer.getvalue()
    for secret in (ANTHROPIC_KEY, AWS_SECRET, AWS_SESSION, WEBHOOK_SECRET, ADMIN, PERSON_TOKEN.split("_", 2)[2]):
        assert secret not in out
    lines = records(buffer)
    assert lines[0]["message"] == f"key sk-ant-{REDACTED} token sp_0123456789abcdef_{REDACTED}"  # the id stays
    assert "Bearer " + REDACTED in lines[2]["message"]
    assert "provider said: invalid key" in lines[3]["exc"]


def test_ids_and_digests_are_not_secrets():
    text = ("job 3f2b8c1e-4d5a-4b6c-8d7e-9f0a1b2c3d4e sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709 "
            "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 "
            "an Authorization: Bearer <token> header is required")
    assert redact(text) == text


def test_an_aws_secret_alone_is_recognised_by_its_shape():
    assert redact(f"creds {AWS_SECRET} end") == f"creds {REDACTED} end"


def test_an_http_error_message_never_carries_a_key():
    from soulprint.models.query import Unavailable

    message = message_of(Unavailable(f"the answer provider (anthropic) failed: 401 invalid x-api-key {ANTHROPIC_KEY}"))
    assert ANTHROPIC_KEY not in message and message.endswith(f"x-api-key sk-ant-{REDACTED}")


class KeyQuotingProvider(RemoteLLMClient):
    """A provider whose error message quotes the key it was sent (as some proxies do)."""

    provider = "anthropic"

    def _model_for(self, role: str) -> str:
        return "claude-test"

    async def _send(self, model, body):
        raise TransportError("api", f"401 authentication_error: invalid x-api-key {ANTHROPIC_KEY}", retryable=False)


async def test_an_llm_error_line_never_carries_the_key():
    client = KeyQuotingProvider(LLMConfig(api_key=ANTHROPIC_KEY, cache_enabled=False), limiter=AdaptiveLimiter(1, 1))
    result = await client.complete(LLMRequest(task="answer", system="", messages=[{"role": "user", "content": "hi"}]))
    assert not result.ok and "invalid x-api-key" in result.error
    assert ANTHROPIC_KEY not in result.error


def test_the_cli_writes_json_to_the_terminal_and_the_library_log(tmp_path: Path, capsys):
    settings = dataclasses.replace(load_settings({"SOULPRINT_LOG_FORMAT": "json"}), data_dir=tmp_path)
    settings = dataclasses.replace(settings, service=dataclasses.replace(settings.service, admin_token=ADMIN))
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        cli._configure_logging(False, settings)
        with job_context("job-9", "parsing"):
            logging.getLogger("soulprint.agents.ingest").warning("parse failed with token %s", ADMIN)
            logging.getLogger("aiokafka").error("broker gone")
        for handler in root.handlers:
            handler.flush()
    finally:
        for handler in set(root.handlers) - set(before):
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)
    (terminal,) = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert terminal["message"] == f"parse failed with token {REDACTED}"
    assert (terminal["job_id"], terminal["stage"]) == ("job-9", "parsing")
    (library,) = [json.loads(line) for line in (tmp_path / "soulprint.log").read_text().splitlines()]
    assert library["logger"] == "aiokafka" and library["job_id"] == "job-9"
