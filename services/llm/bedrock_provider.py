"""Claude on Amazon Bedrock: ``bedrock-runtime`` InvokeModel with the Messages body.

boto3 is synchronous, so each attempt runs in ``asyncio.to_thread``. botocore's
own retries are limited to the first attempt (standard mode, max_attempts=1)
so that, as with the Anthropic SDK, :class:`RemoteLLMClient`'s loop is the only
retry loop and every attempt passes through the adaptive limiter.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import orjson

from soulprint.models.text import one_line

from .base import ERROR_CHARS, LLMConfig, RemoteLLMClient, ResponseCache, SendResult, Sleep, TransportError, UsageSink
from .ratelimit import throttle_hint

BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"

# Bedrock error codes → our kinds. ModelNotReady is Bedrock's "overloaded,
# come back shortly"; ServiceQuotaExceeded (400) is a hard quota, not a rate.
_THROTTLE = {"ThrottlingException": "rate_limited", "TooManyRequestsException": "rate_limited",
             "ModelNotReadyException": "overloaded", "ServiceUnavailableException": "overloaded"}
_RETRYABLE = {"ModelTimeoutException": "timeout", "InternalServerException": "api", "ModelErrorException": "api"}


def make_boto_client(config: LLMConfig, **kwargs: Any) -> Any:
    import boto3
    from botocore.config import Config

    boto_config = Config(
        # Ours is the retry loop. botocore's "max_attempts" counts *retries*
        # (max_attempts=1 still retries once); total_max_attempts counts the
        # first try too, so 1 means exactly one HTTP request per attempt of ours.
        retries={"total_max_attempts": 1, "mode": "standard"},
        read_timeout=config.timeout_s,
        connect_timeout=min(10.0, config.timeout_s),
        # to_thread calls share this client: let each in-flight call have a connection.
        max_pool_connections=max(10, config.max_concurrency),
    )
    return boto3.client("bedrock-runtime", region_name=config.bedrock_region or "us-east-1",
                        endpoint_url=config.bedrock_endpoint_url, config=boto_config, **kwargs)


class BedrockClient(RemoteLLMClient):
    provider = "bedrock"

    def __init__(self, config: LLMConfig, *, sink: UsageSink | None = None, cache: ResponseCache | None = None,
                 limiter: Any = None, sleep: Sleep | None = None, boto_client: Any = None) -> None:
        super().__init__(config, sink=sink, cache=cache, limiter=limiter, sleep=sleep)
        self._boto = boto_client
        self._boto_lock = threading.Lock()  # boto3 client creation is not thread-safe

    def _limiter_key(self) -> str:
        return f"bedrock:{self.config.bedrock_region}:{self.config.bedrock_endpoint_url or 'default'}"

    def _model_for(self, role: str) -> str:
        return self.config.bedrock_model_for(role)

    def _client(self) -> Any:
        with self._boto_lock:
            if self._boto is None:
                self._boto = make_boto_client(self.config)
            return self._boto

    async def _send(self, model: str, body: dict[str, Any]) -> SendResult:
        payload = {"anthropic_version": BEDROCK_ANTHROPIC_VERSION, **body}
        return await asyncio.to_thread(self._invoke, model, orjson.dumps(payload))

    def _invoke(self, model: str, payload: bytes) -> SendResult:
        from botocore.exceptions import (BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError,
                                         ReadTimeoutError)

        try:
            resp = self._client().invoke_model(modelId=model, body=payload, contentType="application/json",
                                               accept="application/json")
            raw = resp["body"].read()
        except (ReadTimeoutError, ConnectTimeoutError) as exc:
            raise TransportError("timeout", f"timed out after {self.config.timeout_s:g}s", retryable=True) from exc
        except EndpointConnectionError as exc:
            raise TransportError("api", one_line(f"connection error: {exc}", ERROR_CHARS), retryable=True) from exc
        except ClientError as exc:
            raise _client_error(exc) from exc
        except BotoCoreError as exc:
            raise TransportError("api", one_line(f"{type(exc).__name__}: {exc}", ERROR_CHARS), retryable=True) from exc
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise TransportError("api", "response body is not JSON", retryable=True) from exc
        if not isinstance(data, dict):
            raise TransportError("api", "response body is not a JSON object", retryable=True)
        return SendResult(body=data)


def _client_error(exc: Any) -> TransportError:
    err = exc.response.get("Error", {}) if hasattr(exc, "response") else {}
    code = err.get("Code") or "Unknown"
    meta = exc.response.get("ResponseMetadata", {}) if hasattr(exc, "response") else {}
    status = meta.get("HTTPStatusCode")
    headers = meta.get("HTTPHeaders") or {}
    message = one_line(f"{status} {code}: {err.get('Message') or exc}", ERROR_CHARS)
    if code in _THROTTLE:
        return TransportError(_THROTTLE[code], message, retryable=True, retry_after=throttle_hint(headers),
                              status=status)
    if code in _RETRYABLE:
        return TransportError(_RETRYABLE[code], message, retryable=True, status=status)
    if status == 429:
        return TransportError("rate_limited", message, retryable=True, retry_after=throttle_hint(headers),
                              status=status)
    if isinstance(status, int) and status >= 500:
        return TransportError("overloaded" if status == 503 else "api", message, retryable=True, status=status)
    return TransportError("api", message, retryable=False, status=status)
