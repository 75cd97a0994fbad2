"""load_settings(): one parser, one error naming the variable, cross-field checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from soulprint.settings import EVENT_ENVELOPE_BYTES, SettingsError, load_settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Each test starts from an environment without any of our variables."""
    for name in list(os.environ):
        if name.startswith(("SOULPRINT_", "ANTHROPIC_", "AWS_")):
            monkeypatch.delenv(name)
    return monkeypatch


def refused(monkeypatch, **env) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    return str(err.value)


def test_defaults_load_and_hold_together():
    s = load_settings()
    assert s.embedded_kafka and s.embedded_postgres
    assert s.llm.provider is None and s.llm.api_key is None and s.llm.cache_enabled is True
    assert s.max_event_bytes >= s.parse_limits.max_conversation_bytes + EVENT_ENVELOPE_BYTES
    assert s.llm.initial_concurrency <= s.llm.max_concurrency
    assert s.quick_llm_concurrency <= s.quick_llm_max_concurrency
    assert s.debug is False


def test_the_llm_configuration_comes_from_the_same_tree(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SOULPRINT_LLM_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("SOULPRINT_LLM_CACHE", "Off")
    monkeypatch.setenv("SOULPRINT_LLM_TIMEOUT_S", "12.5")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("SOULPRINT_LLM_PRICES", json.dumps({"my-model": [1, 2, 3, 4]}))
    llm = load_settings().llm
    assert (llm.api_key, llm.base_url, llm.max_attempts, llm.cache_enabled) == ("k", "http://127.0.0.1:9", 2, False)
    assert llm.timeout_s == 12.5 and llm.bedrock_region == "eu-west-1"
    assert llm.price_for("my-model-v1").cache_read == 4.0
    assert llm.price_for("claude-haiku-4-5") is not None  # merged over the defaults


@pytest.mark.parametrize("raw, expected", [("1", True), ("TRUE", True), ("yes", True), ("On", True),
                                           ("0", False), ("false", False), ("NO", False), ("off", False)])
def test_booleans_accept_the_usual_words(monkeypatch, raw, expected):
    monkeypatch.setenv("SOULPRINT_FACTS_BATCH_API", raw)
    monkeypatch.setenv("SOULPRINT_LLM_CACHE", raw)
    s = load_settings()
    assert s.facts_batch_api is expected and s.llm.cache_enabled is expected


@pytest.mark.parametrize("name, raw, words", [
    ("SOULPRINT_LLM_TIMEOUT_S", "abc", "must be a number of seconds, got 'abc'"),
    ("SOULPRINT_LLM_CACHE", "maybe", "got 'maybe'"),
    ("SOULPRINT_DEBUG", "sure", "got 'sure'"),
    ("SOULPRINT_KAFKA_PARTITIONS", "0", "at least 1"),
    ("SOULPRINT_KAFKA_PARTITIONS", "three", "must be an integer, got 'three'"),
    ("SOULPRINT_STALL_TIMEOUT", "-5", "got '-5'"),
    ("SOULPRINT_LLM_TIMEOUT_S", "nan", "got 'nan'"),
    ("SOULPRINT_LLM_PROVIDER", "openai", "anthropic, bedrock, offline, got 'openai'"),
    ("SOULPRINT_LLM_PRICES", "[1,2]", "JSON object of 4-number lists"),
    ("SOULPRINT_LLM_PRICES", '{"m": [1, 2]}', "JSON object of 4-number lists"),
    ("SOULPRINT_MAX_COMPRESSION_RATIO", "1", "above 1"),
    ("SOULPRINT_MAX_CONVERSATION_BYTES", "0", "at least 1"),
    ("SOULPRINT_BROKER_TIMEOUT", "0", "at least 1"),
])
def test_a_malformed_setting_names_the_variable_and_value(monkeypatch, name, raw, words):
    message = refused(monkeypatch, **{name: raw})
    assert message.startswith(name) and words in message


def test_an_event_must_hold_the_largest_conversation_sent_inline(monkeypatch):
    # Larger conversations go by reference, so only the inline threshold must fit.
    message = refused(monkeypatch, SOULPRINT_MAX_EVENT_BYTES=str(2 << 20),
                      SOULPRINT_INLINE_CONVERSATION_BYTES=str(4 << 20))
    assert "SOULPRINT_MAX_EVENT_BYTES" in message and "SOULPRINT_INLINE_CONVERSATION_BYTES" in message
    monkeypatch.setenv("SOULPRINT_INLINE_CONVERSATION_BYTES", str(1 << 20))
    assert load_settings().max_event_bytes == 2 << 20


def test_concurrency_start_may_not_exceed_its_ceiling(monkeypatch):
    message = refused(monkeypatch, SOULPRINT_LLM_CONCURRENCY="10", SOULPRINT_LLM_MAX_CONCURRENCY="5")
    assert "SOULPRINT_LLM_CONCURRENCY (10)" in message and "SOULPRINT_LLM_MAX_CONCURRENCY (5)" in message
    message = refused(monkeypatch, SOULPRINT_LLM_CONCURRENCY="1",
                      SOULPRINT_QUICK_LLM_CONCURRENCY="9", SOULPRINT_QUICK_LLM_MAX_CONCURRENCY="2")
    assert "SOULPRINT_QUICK_LLM_CONCURRENCY (9)" in message


def test_an_unset_start_follows_a_lowered_ceiling(monkeypatch):
    monkeypatch.setenv("SOULPRINT_LLM_MAX_CONCURRENCY", "3")
    monkeypatch.setenv("SOULPRINT_QUICK_LLM_MAX_CONCURRENCY", "2")
    s = load_settings()
    assert (s.llm.initial_concurrency, s.llm.max_concurrency) == (3, 3)
    assert (s.quick_llm_concurrency, s.quick_llm_max_concurrency) == (2, 2)


def test_no_other_module_reads_the_environment():
    hits = subprocess.run(["grep", "-rln", r"os\.environ\|getenv", "--include=*.py", "."], cwd=REPO,
                          capture_output=True, text=True).stdout.split()
    allowed = ("./settings.py", "./tests/", "./bench/", "./.venv/", "./build/")  # build/: wheel build output
    assert [h for h in hits if not h.startswith(allowed)] == []


@pytest.mark.integration
@pytest.mark.parametrize("command", [
    ["import", str(REPO / "samples" / "sample-export.zip"), "--user", "x"],
    ["status", "some-job"],
    ["worker"],
    ["export", "x", "--out", "/nonexistent/out"],
])
def test_every_command_refuses_a_malformed_setting_at_once(tmp_path, command):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOULPRINT_")}
    env.update(SOULPRINT_DATA_DIR=str(tmp_path / "data"), SOULPRINT_LLM_TIMEOUT_S="abc")
    result = subprocess.run([sys.executable, "-m", "soulprint.cli", *command], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "soulprint: error: SOULPRINT_LLM_TIMEOUT_S must be a number of seconds, got 'abc'"]
    assert not (tmp_path / "data").exists()  # before any service started
