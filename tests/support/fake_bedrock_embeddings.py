"""A protocol-faithful fake of Bedrock InvokeModel for the two embedding models.

The real boto3 ``bedrock-runtime`` client talks to it over loopback HTTP
(``endpoint_url=srv.url``), so signing, serialisation, error parsing and our
retry loop run for real.

    async with FakeBedrockEmbeddings() as srv:
        srv.throttle(2)                       # the next two requests get 429
        ... BedrockTitanEmbedder(endpoint_url=srv.url, aws_access_key_id="x", ...)
        srv.stats["requests"]

Route: ``POST /model/{modelId}/invoke`` for ``amazon.titan-embed-text-v2:0``
and ``cohere.embed-english-v3`` / ``cohere.embed-multilingual-v3``, with the
service's validation: Titan needs ``inputText`` (at most 50,000 characters),
``dimensions`` one of 256/512/1024, ``normalize`` a boolean, no other keys;
Cohere needs ``texts`` (at most 96, each at most 2,048 characters) and
``input_type`` (v3 requires it), ``truncate`` one of NONE/START/END. A refusal
is AWS's rest-json error: the status, ``x-amzn-ErrorType: Code:...`` and
``{"message": ...}``. A request without a SigV4 Authorization header is 403.

Vectors are deterministic: feature hashing of the text's words (so texts that
share words are close), 1024 numbers for Cohere, ``dimensions`` for Titan,
unit length only where Titan is asked to normalise (Cohere's are not, so the
client's own normalisation is exercised).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import math
import re
import urllib.parse
from typing import Any

from support.fake_anthropic import LoopbackServer, _read_request, _write_response

TITAN = "amazon.titan-embed-text-v2:0"
COHERE = ("cohere.embed-english-v3", "cohere.embed-multilingual-v3")
_ERROR_NS = "http://internal.amazon.com/coral/com.amazon.bedrock/"
_WORD = re.compile(r"\w+")


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _malformed(detail: str) -> _Refusal:
    return _Refusal(400, "ValidationException", f"Malformed input request: {detail}, please reformat your input and try again.")


def vector(text: str, dims: int, normalise: bool) -> list[float]:
    out = [0.0] * dims
    for word in _WORD.findall(text.lower()):
        h = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "big")
        out[h % dims] += 1.0 if h >> 63 else -1.0
    if not any(out):
        out[0] = 1.0
    norm = math.sqrt(sum(x * x for x in out))
    scale = 1.0 / norm if normalise else 0.37  # an arbitrary length when not normalised
    return [x * scale for x in out]


class FakeBedrockEmbeddings(LoopbackServer):
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._throttle = 0
        self.stats: dict[str, Any] = {}
        self.reset()

    def reset(self) -> None:
        self._throttle = 0
        self.stats = {"requests": 0, "status": collections.Counter(), "texts": 0, "batch_sizes": [],
                      "input_types": collections.Counter(), "models": collections.Counter()}

    def throttle(self, n: int) -> None:
        """Answer the next ``n`` requests with 429 ThrottlingException."""
        self._throttle = n

    async def _handle_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while (req := await _read_request(reader, writer)) is not None:
                method, target, headers, body = req
                status, extra, payload = self._answer(method, target, headers, body)
                self.stats["status"][status] += 1
                _write_response(writer, status, extra, payload, "application/json")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError, ValueError):
            pass
        finally:
            self._conns.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    def _answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, dict, bytes]:
        self.stats["requests"] += 1
        try:
            m = re.fullmatch(r"/model/([^/]+)/invoke", urllib.parse.urlsplit(target).path)
            if method != "POST" or not m:
                raise _Refusal(404, "UnknownOperationException", f"no route for {method} {target}")
            if not headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 "):
                raise _Refusal(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
            if self._throttle > 0:
                self._throttle -= 1
                raise _Refusal(429, "ThrottlingException", "Too many requests, please wait before trying again.")
            model = urllib.parse.unquote(m.group(1))
            try:
                req = json.loads(body or b"null")
            except ValueError:
                raise _malformed("request body is not valid JSON")
            if not isinstance(req, dict):
                raise _malformed("#: expected type: JSONObject")
            self.stats["models"][model] += 1
            if model == TITAN:
                return self._titan(req)
            if model in COHERE:
                return self._cohere(req)
            raise _Refusal(400, "ValidationException", "The provided model identifier is invalid.")
        except _Refusal as err:
            headers_out = {"x-amzn-ErrorType": f"{err.code}:{_ERROR_NS}", "x-amzn-RequestId": "fake-request"}
            return err.status, headers_out, json.dumps({"message": err.message}).encode()

    def _titan(self, req: dict[str, Any]) -> tuple[int, dict, bytes]:
        extra = set(req) - {"inputText", "dimensions", "normalize", "embeddingTypes"}
        if extra:
            raise _malformed(f"#: extraneous key [{sorted(extra)[0]}] is not permitted")
        text = req.get("inputText")
        if not isinstance(text, str):
            raise _malformed("#: required key [inputText] not found" if text is None else "#/inputText: expected type: String")
        if not 0 < len(text) <= 50_000:
            raise _malformed(f"#/inputText: expected minLength: 1, maxLength: 50000, actual: {len(text)}")
        dims = req.get("dimensions", 1024)
        if dims not in (256, 512, 1024) or isinstance(dims, bool):
            raise _malformed(f"#/dimensions: {dims} is not a valid enum value")
        normalise = req.get("normalize", True)
        if not isinstance(normalise, bool):
            raise _malformed("#/normalize: expected type: Boolean")
        tokens = len(_WORD.findall(text)) or 1
        self.stats["texts"] += 1
        self.stats["batch_sizes"].append(1)
        vec = vector(text, dims, normalise)
        answer = {"embedding": vec, "embeddingsByType": {"float": vec}, "inputTextTokenCount": tokens}
        return 200, {"x-amzn-bedrock-input-token-count": str(tokens)}, json.dumps(answer).encode()

    def _cohere(self, req: dict[str, Any]) -> tuple[int, dict, bytes]:
        extra = set(req) - {"texts", "input_type", "truncate", "embedding_types", "images"}
        if extra:
            raise _malformed(f"#: extraneous key [{sorted(extra)[0]}] is not permitted")
        texts = req.get("texts")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise _malformed("#: required key [texts] not found" if texts is None else "#/texts: expected type: JSONArray of String")
        if len(texts) > 96:
            raise _malformed(f"#/texts: expected maximum item count: 96, found: {len(texts)}")
        for i, t in enumerate(texts):
            if len(t) > 2048:
                raise _malformed(f"#/texts/{i}: expected maxLength: 2048, actual: {len(t)}")
        kind = req.get("input_type")
        if kind is None:
            raise _malformed("#: required key [input_type] not found")
        if kind not in ("search_document", "search_query", "classification", "clustering"):
            raise _malformed(f"#/input_type: {kind} is not a valid enum value")
        if req.get("truncate", "NONE") not in ("NONE", "START", "END"):
            raise _malformed(f"#/truncate: {req['truncate']} is not a valid enum value")
        self.stats["texts"] += len(texts)
        self.stats["batch_sizes"].append(len(texts))
        self.stats["input_types"][kind] += 1
        answer = {"id": f"fake-{self.stats['requests']}", "response_type": "embeddings_floats", "texts": texts,
                  "embeddings": [vector(t, 1024, normalise=False) for t in texts]}
        return 200, {"x-amzn-bedrock-input-token-count": str(sum(len(_WORD.findall(t)) for t in texts))}, json.dumps(answer).encode()


def aws_environment(monkeypatch) -> None:
    """Dummy credentials in the environment for boto3's default chain (what the configured
    providers read), and nothing from ~/.aws or instance metadata."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret")
    for var in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
