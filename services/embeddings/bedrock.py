"""Embeddings on Amazon Bedrock: Titan Text Embeddings V2 and Cohere Embed v3.

Both go through boto3 ``bedrock-runtime`` ``invoke_model``. boto3 blocks, so
every request runs in a worker thread (``asyncio.to_thread``); at most
``concurrency`` requests are in flight per embedder. botocore does exactly one
HTTP request per call (``total_max_attempts=1``): the retry loop here is the
only one, with exponential backoff on throttling (429) and server errors.
A refusal (400 ValidationException, 403) is not retried and becomes an
EmbeddingError of one line.

Titan takes one text per request (``inputText``; dimensions 256, 512 or 1024;
``normalize``); Cohere up to 96 texts of at most 2,048 characters with an
``input_type`` (``search_document`` for chunks, ``search_query`` for queries).
Longer texts are cut to the provider's limit here (Cohere reads 512 tokens, so
the cut loses nothing it would have read).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Callable

import boto3
import orjson
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ParamValidationError

from soulprint.models.embedding import EmbeddingSpace, EmbedKind
from soulprint.models.text import one_line

from .base import Embedder, EmbeddingError, unit

TITAN_MODEL = "amazon.titan-embed-text-v2:0"
TITAN_DIMENSIONS = (256, 512, 1024)
TITAN_MAX_CHARS = 50_000
COHERE_MODELS = ("cohere.embed-english-v3", "cohere.embed-multilingual-v3")
COHERE_DIMENSIONS = 1024
COHERE_MAX_TEXTS = 96
COHERE_MAX_CHARS = 2048
_INPUT_TYPES = {"document": "search_document", "query": "search_query"}

_RETRYABLE_CODES = {"ThrottlingException", "TooManyRequestsException", "ModelNotReadyException",
                    "ServiceUnavailableException", "ModelTimeoutException", "InternalServerException"}
ERROR_CHARS = 300

Sleep = Callable[[float], Awaitable[None]]


class _Retryable(Exception):
    pass


class BedrockEmbedder(Embedder):
    """What Titan and Cohere share: the boto3 client, the retry loop, errors."""

    provider = ""

    def __init__(self, model: str, *, region: str = "us-east-1", endpoint_url: str | None = None,
                 concurrency: int = 8, max_attempts: int = 6, backoff_s: float = 0.5, max_backoff_s: float = 20.0,
                 timeout_s: float = 60.0, aws_access_key_id: str | None = None,
                 aws_secret_access_key: str | None = None, aws_session_token: str | None = None,
                 sleep: Sleep = asyncio.sleep) -> None:
        if concurrency < 1 or max_attempts < 1:
            raise EmbeddingError(f"{self.provider}: concurrency and max_attempts must be at least 1")
        self.model = model
        self._attempts = max_attempts
        self._backoff = (backoff_s, max_backoff_s)
        self._sleep = sleep
        self._slots = asyncio.Semaphore(concurrency)
        self._boto_args = dict(region_name=region, endpoint_url=endpoint_url, aws_access_key_id=aws_access_key_id,
                               aws_secret_access_key=aws_secret_access_key, aws_session_token=aws_session_token)
        self._boto_config = dict(timeout_s=timeout_s, pool=max(10, concurrency))
        self._boto: Any = None
        self._boto_lock = threading.Lock()  # creating a boto3 client is not thread-safe

    def _client(self) -> Any:
        with self._boto_lock:
            if self._boto is None:
                timeout, pool = self._boto_config["timeout_s"], self._boto_config["pool"]
                config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=timeout,
                                connect_timeout=min(10.0, timeout), max_pool_connections=pool)
                self._boto = boto3.client("bedrock-runtime", config=config, **self._boto_args)
            return self._boto

    async def _request(self, body: dict[str, Any]) -> dict[str, Any]:
        """One InvokeModel with retries; the parsed JSON answer."""
        payload = orjson.dumps(body)
        delay, cap = self._backoff
        for attempt in range(1, self._attempts + 1):
            try:
                async with self._slots:
                    return await asyncio.to_thread(self._invoke, payload)
            except _Retryable as exc:
                if attempt == self._attempts:
                    raise EmbeddingError(f"{self.provider}: gave up after {attempt} attempts: {exc}") from exc
                await self._sleep(min(cap, delay * 2 ** (attempt - 1)))
        raise AssertionError("unreachable")

    def _invoke(self, payload: bytes) -> dict[str, Any]:
        try:
            resp = self._client().invoke_model(modelId=self.model, body=payload, contentType="application/json",
                                               accept="application/json")
            raw = resp["body"].read()
        except ClientError as exc:
            err = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = err.get("Code") or "Unknown"
            message = one_line(f"{status} {code}: {err.get('Message') or exc}", ERROR_CHARS)
            if code in _RETRYABLE_CODES or status == 429 or (isinstance(status, int) and status >= 500):
                raise _Retryable(message) from exc
            raise EmbeddingError(f"{self.provider} {self.model}: {message}") from exc
        except (NoCredentialsError, ParamValidationError) as exc:  # retrying cannot help
            raise EmbeddingError(one_line(f"{self.provider} {self.model}: {exc}", ERROR_CHARS)) from exc
        except BotoCoreError as exc:  # connection refused, timeouts: the endpoint may come back
            raise _Retryable(one_line(f"{type(exc).__name__}: {exc}", ERROR_CHARS)) from exc
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise EmbeddingError(f"{self.provider} {self.model}: response body is not JSON") from exc
        if not isinstance(data, dict):
            raise EmbeddingError(f"{self.provider} {self.model}: response body is not a JSON object")
        return data

    def _vector(self, value: Any) -> list[float]:
        if not isinstance(value, list) or len(value) != self.space.dimensions or not all(
                isinstance(x, (int, float)) for x in value):
            raise EmbeddingError(f"{self.provider} {self.model}: expected a vector of {self.space.dimensions} numbers")
        return unit(value)


class BedrockTitanEmbedder(BedrockEmbedder):
    provider = "bedrock-titan"
    max_batch = 64  # texts a call; each is its own request, `concurrency` at a time

    def __init__(self, model: str = TITAN_MODEL, *, dimensions: int = 1024, **options: Any) -> None:
        if dimensions not in TITAN_DIMENSIONS:
            raise EmbeddingError(f"bedrock-titan: dimensions must be one of {TITAN_DIMENSIONS}, not {dimensions}")
        super().__init__(model, **options)
        self.space = EmbeddingSpace(self.provider, model, dimensions)

    async def _embed(self, texts: list[str], kind: EmbedKind) -> list[list[float]]:
        return list(await asyncio.gather(*(self._one(t) for t in texts)))

    async def _one(self, text: str) -> list[float]:
        body = {"inputText": text[:TITAN_MAX_CHARS], "dimensions": self.space.dimensions, "normalize": True}
        return self._vector((await self._request(body)).get("embedding"))


class BedrockCohereEmbedder(BedrockEmbedder):
    provider = "bedrock-cohere"
    max_batch = COHERE_MAX_TEXTS

    def __init__(self, model: str = COHERE_MODELS[0], **options: Any) -> None:
        if model not in COHERE_MODELS:
            raise EmbeddingError(f"bedrock-cohere: model must be one of {COHERE_MODELS}, not {model!r}")
        super().__init__(model, **options)
        self.space = EmbeddingSpace(self.provider, model, COHERE_DIMENSIONS)

    async def _embed(self, texts: list[str], kind: EmbedKind) -> list[list[float]]:
        body = {"texts": [t[:COHERE_MAX_CHARS] for t in texts], "input_type": _INPUT_TYPES[kind], "truncate": "END"}
        vectors = (await self._request(body)).get("embeddings")
        if not isinstance(vectors, list) or len(vectors) != len(texts):
            raise EmbeddingError(f"{self.provider} {self.model}: expected {len(texts)} embeddings")
        return [self._vector(v) for v in vectors]
