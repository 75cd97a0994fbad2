"""A protocol-faithful fake of the Anthropic Messages API (and Bedrock's InvokeModel).

For tests and load benches: the real SDK and boto3 talk to it over loopback
HTTP, so retries, timeouts, headers and accounting are exercised for real.

    python tests/support/fake_anthropic.py --port 0 --latency 0.0 --rpm 0 --tpm 0 \\
        --error-rate-429 0 --error-rate-529 0 --malformed-rate 0 --schema-break-rate 0 \\
        --timeout-rate 0 --seed 1
    # first stdout line: "listening http://127.0.0.1:PORT"

    async with FakeAnthropicServer(seed=1) as srv:
        client = anthropic.AsyncAnthropic(api_key="test", base_url=srv.url)

Routes
  POST /v1/messages                     Messages API (forced tool calls answered with
                                        input synthesised to validate against input_schema)
  POST /model/{modelId}/invoke          Bedrock InvokeModel (same body minus model, plus
                                        anthropic_version; same response JSON)
  POST /v1/messages/batches             Message Batches: create (processed at once)
  GET  /v1/messages/batches/{id}        ... status ("ended" after `batch_polls` GETs)
  GET  /v1/messages/batches/{id}/results  ... results as JSONL, in `batch_results_order`
  POST /v1/messages/batches/{id}/cancel ... cancel ("canceling", then "ended" at the next GET)
  GET  /_stats  POST /_reset  POST /_config  (knobs as JSON; "script": [...] queues outcomes)

Faults (seeded RNG, so runs are reproducible): 429 rate_limit_error with
retry-after and anthropic-ratelimit-* headers, 529 overloaded_error, 500
api_error, timeouts (the request is held for `hang_s` or until the client
gives up, then the connection is closed unanswered), malformed answers (text
instead of the forced tool call) and schema-breaking tool input (a required
property dropped). rpm/tpm limits use a sliding 60 s window. A script of
outcomes ("ok", "429", "529", "500", "timeout", "malformed", "schema_break",
"truncated") is consumed before the random faults, for exact tests; a batch
script ("ok", "errored", "expired", "canceled") decides batch requests first.

Accounting invariant: /_stats token counters are exactly the sums of the
``usage`` blocks the server returned (a request that got no 200 has no usage).

Built on asyncio streams only (a small HTTP/1.1 server with keep-alive,
Content-Length and chunked bodies), so it has no dependency to install.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import hashlib
import http
import json
import random
import re
import signal
import sys
import time
import urllib.parse
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any

_HANG = object()  # dispatch result: hold the request, never answer

OUTCOMES = ("ok", "429", "529", "500", "timeout", "malformed", "schema_break", "truncated")
BATCH_OUTCOMES = ("ok", "errored", "expired", "canceled")


@dataclass
class FakeConfig:
    latency: float = 0.0  # seconds added to every answered request
    rpm: int = 0  # requests per minute (sliding 60 s window); 0 = unlimited
    tpm: int = 0  # tokens (input + output) per minute; 0 = unlimited
    error_rate_429: float = 0.0
    error_rate_529: float = 0.0
    error_rate_500: float = 0.0
    malformed_rate: float = 0.0  # text instead of the forced tool call
    schema_break_rate: float = 0.0  # tool input missing a required property
    timeout_rate: float = 0.0
    hang_s: float = 30.0  # how long a "timeout" request is held
    retry_after: float = 1.0  # seconds sent with random 429s (fractions allowed)
    overloaded_retry_after: float | None = None  # retry-after on 529s (the real API sends none)
    seed: int = 1
    min_cache_tokens: int = 1024  # smallest cacheable prefix (the API's minimum for Sonnet)
    cache_ttl_s: float = 300.0
    require_auth: bool = True
    batch_polls: int = 1  # GETs of a batch before it reports "ended"
    batch_results_order: str = "shuffled"  # results file order: "shuffled", "reversed" or "request"


def _now_iso(offset_s: float = 0.0) -> str:
    t = datetime.now(timezone.utc) + timedelta(seconds=offset_s)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _canon(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def estimate_tokens(obj: Any) -> int:
    """~4 characters per token over compact JSON, at least 1."""
    return max(1, len(_canon(obj)) // 4)


class _ApiError(Exception):
    def __init__(self, status: int, etype: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.etype, self.message, self.headers = status, etype, message, headers or {}


_BEDROCK_CODES = {400: "ValidationException", 401: "AccessDeniedException", 403: "AccessDeniedException",
                  404: "ResourceNotFoundException", 429: "ThrottlingException", 500: "InternalServerException",
                  529: "ServiceUnavailableException"}


class LoopbackServer:
    """An asyncio HTTP server on a loopback port (0: any free one), with its
    open connections, for the fakes: subclasses implement ``_handle_conn``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _handle_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def start(self):
        self._server = await asyncio.start_server(self._handle_conn, self.host, self.port, limit=2**24)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        for task in list(self._conns):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()


class FakeAnthropicServer(LoopbackServer):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, **knobs: Any) -> None:
        super().__init__(host, port)
        self.config = FakeConfig()
        self.reset()
        self.configure(**knobs)  # after reset(): a script given here is queued, a seed reseeds

    # ------------------------------------------------------------------ knobs & stats

    def configure(self, **knobs: Any) -> None:
        names = {f.name for f in fields(FakeConfig)}
        script = knobs.pop("script", None)
        batch_script = knobs.pop("batch_script", None)
        unknown = set(knobs) - names
        if unknown:
            raise ValueError(f"unknown fake server knobs: {sorted(unknown)}")
        if knobs.get("batch_results_order", "shuffled") not in ("shuffled", "reversed", "request"):
            raise ValueError("batch_results_order must be 'shuffled', 'reversed' or 'request'")
        reseed = "seed" in knobs
        for k, v in knobs.items():
            setattr(self.config, k, v)
        if reseed and hasattr(self, "rng"):
            self.rng = random.Random(self.config.seed)
        if script is not None:
            self.script(script)
        if batch_script is not None:
            self.script_batch(batch_script)

    def script(self, outcomes: list[str]) -> None:
        """Queue exact outcomes for the next model requests (before random faults apply)."""
        bad = [o for o in outcomes if o not in OUTCOMES]
        if bad:
            raise ValueError(f"unknown outcomes {bad}; expected {OUTCOMES}")
        self._script.extend(outcomes)

    def script_batch(self, outcomes: list[str]) -> None:
        """Queue outcomes for the next batch requests, in submission order: "ok" (answered like a
        message request, script and faults included), "errored", "expired" or "canceled"."""
        bad = [o for o in outcomes if o not in BATCH_OUTCOMES]
        if bad:
            raise ValueError(f"unknown batch outcomes {bad}; expected {BATCH_OUTCOMES}")
        self._batch_script.extend(outcomes)

    def reset(self) -> None:
        """Counters, caches, windows, script and RNG back to the start (knobs kept)."""
        self.rng = random.Random(self.config.seed)
        self._script: collections.deque[str] = collections.deque()
        self._window: collections.deque[tuple[float, int]] = collections.deque()  # (time, tokens)
        self._prompt_cache: dict[str, float] = {}  # prefix hash -> expiry
        self._batches: dict[str, dict[str, Any]] = {}
        self._batch_script: collections.deque[str] = collections.deque()
        self._seq = 0
        self.requests_log: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        self._stats: dict[str, Any] = {
            "requests": 0, "status": collections.Counter(), "outcomes": collections.Counter(),
            "timeouts": 0, "input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0, "by_model": {}, "by_route": collections.Counter(),
            "in_flight": 0, "max_in_flight": 0, "window_limited": 0, "batches": 0,
        }

    def stats(self) -> dict[str, Any]:
        s = dict(self._stats)
        s["status"] = {str(k): v for k, v in sorted(s["status"].items(), key=lambda kv: str(kv[0]))}
        s["outcomes"] = dict(s["outcomes"])
        s["by_route"] = dict(s["by_route"])
        s["by_model"] = {m: dict(v) for m, v in s["by_model"].items()}
        s["config"] = asdict(self.config)
        s["script_left"] = len(self._script)
        s["batch_script_left"] = len(self._batch_script)
        return s

    def _count_usage(self, model: str, usage: dict[str, int]) -> None:
        st = self._stats
        m = st["by_model"].setdefault(model, {"responses": 0, "input_tokens": 0, "output_tokens": 0,
                                              "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0})
        m["responses"] += 1
        for k in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
            st[k] += usage[k]
            m[k] += usage[k]

    # ------------------------------------------------------------------ HTTP

    async def _handle_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while True:
                req = await _read_request(reader, writer)
                if req is None:
                    break
                method, target, headers, body = req
                result = await self._dispatch(method, target, headers, body, reader)
                if result is _HANG:
                    break  # never answered: the client timed out or gave up
                status, extra, payload, ctype = result
                _write_response(writer, status, extra, payload, ctype)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        except asyncio.CancelledError:
            # stop() cancels open connections. Ending normally keeps asyncio's
            # stream callback from logging the cancellation as an error.
            pass
        finally:
            self._conns.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes,
                        reader: asyncio.StreamReader) -> Any:
        path = urllib.parse.urlsplit(target).path
        try:
            if path == "/_stats" and method == "GET":
                return 200, {}, _dumps(self.stats()), "application/json"
            if path == "/_reset" and method == "POST":
                self.reset()
                return 200, {}, _dumps({"ok": True}), "application/json"
            if path == "/_config" and method == "POST":
                try:
                    self.configure(**(json.loads(body or b"{}")))
                except (ValueError, TypeError) as exc:
                    raise _ApiError(400, "invalid_request_error", str(exc))
                return 200, {}, _dumps({"ok": True, "config": asdict(self.config)}), "application/json"
            if path == "/v1/messages" and method == "POST":
                return await self._model_route("messages", None, headers, body, reader)
            m = re.fullmatch(r"/model/([^/]+)/invoke", path)
            if m and method == "POST":
                return await self._model_route("bedrock", urllib.parse.unquote(m.group(1)), headers, body, reader)
            if path == "/v1/messages/batches" and method == "POST":
                self._auth(headers, "messages")
                return 200, {}, _dumps(self._create_batch(_json_body(body))), "application/json"
            m = re.fullmatch(r"/v1/messages/batches/([^/]+)/cancel", path)
            if m and method == "POST":
                self._auth(headers, "messages")
                return 200, {}, _dumps(self._cancel_batch(m.group(1))), "application/json"
            m = re.fullmatch(r"/v1/messages/batches/([^/]+)(/results)?", path)
            if m and method == "GET":
                self._auth(headers, "messages")
                return self._get_batch(m.group(1), bool(m.group(2)))
            raise _ApiError(404, "not_found_error", f"no route for {method} {path}")
        except _ApiError as err:
            return self._error(err, "messages")

    def _error(self, err: _ApiError, route: str) -> tuple[int, dict[str, str], bytes, str]:
        headers = {"request-id": self._next_id("req_fake")} | err.headers
        if route == "bedrock":
            # Bedrock's rest-json errors: the code in x-amzn-ErrorType, 529 becomes 503.
            code = _BEDROCK_CODES.get(err.status, "InternalServerException")
            status = 503 if err.status == 529 else (403 if err.status == 401 else err.status)
            headers["x-amzn-ErrorType"] = f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/"
            return status, headers, _dumps({"message": err.message, "__type": code}), "application/json"
        body = {"type": "error", "error": {"type": err.etype, "message": err.message}}
        return err.status, headers, _dumps(body), "application/json"

    # ------------------------------------------------------------------ the model routes

    def _auth(self, headers: dict[str, str], route: str) -> None:
        if not self.config.require_auth:
            return
        auth = headers.get("authorization", "")
        if route == "bedrock":
            ok = bool(auth.strip())  # SigV4 or bearer: any signature will do here
        else:
            ok = bool(headers.get("x-api-key", "").strip()) or (
                auth.lower().startswith("bearer ") and bool(auth[7:].strip()))
        if not ok:
            raise _ApiError(401, "authentication_error", "invalid x-api-key")

    async def _model_route(self, route: str, model: str | None, headers: dict[str, str], body: bytes,
                           reader: asyncio.StreamReader) -> Any:
        st = self._stats
        st["requests"] += 1
        st["by_route"][route] += 1
        st["in_flight"] += 1
        st["max_in_flight"] = max(st["max_in_flight"], st["in_flight"])
        try:
            try:
                self._auth(headers, route)
                req = _json_body(body)
                self.requests_log.append({"route": route, "model": model, "body": req})
                model = self._check_request(route, model, req)
                result = await self._answer(route, model, req, reader)
            except _ApiError as err:
                resp = self._error(err, route)
                st["status"][resp[0]] += 1  # the status actually sent (Bedrock maps 529 to 503)
                return resp
            if result is _HANG:
                st["status"]["timeout"] += 1
                st["timeouts"] += 1
                return _HANG
            st["status"][200] += 1
            return result
        finally:
            st["in_flight"] -= 1

    def _check_request(self, route: str, model: str | None, req: dict[str, Any]) -> str:
        if route == "bedrock":
            if req.get("anthropic_version") != "bedrock-2023-05-31":
                raise _ApiError(400, "invalid_request_error", "anthropic_version: expected 'bedrock-2023-05-31'")
            if "model" in req:
                raise _ApiError(400, "invalid_request_error", "model: Extra inputs are not permitted")
        else:
            model = req.get("model")
            if not isinstance(model, str) or not model:
                raise _ApiError(400, "invalid_request_error", "model: Field required")
        if not isinstance(req.get("max_tokens"), int) or req["max_tokens"] < 1:
            raise _ApiError(400, "invalid_request_error", "max_tokens: Field required (positive integer)")
        msgs = req.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise _ApiError(400, "invalid_request_error", "messages: at least one message is required")
        for i, msg in enumerate(msgs):
            if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
                raise _ApiError(400, "invalid_request_error", f"messages.{i}.role: must be 'user' or 'assistant'")
        if msgs[0].get("role") != "user":
            raise _ApiError(400, "invalid_request_error", "messages: first message must use the 'user' role")
        if "temperature" in req:
            # The current models reject sampling parameters; catching it here keeps clients honest.
            raise _ApiError(400, "invalid_request_error", "temperature: not supported for this model")
        _check_tool_results(msgs)
        tools = req.get("tools") or []
        choice = req.get("tool_choice")
        if choice and choice.get("type") == "tool" and not any(t.get("name") == choice.get("name") for t in tools):
            raise _ApiError(400, "invalid_request_error", f"tool_choice: no tool named {choice.get('name')!r}")
        assert model is not None
        return model

    def _next_outcome(self) -> str:
        cfg = self.config
        # Draw every rate every time so the sequence of decisions depends only on the seed.
        draws = {k: self.rng.random() for k in ("timeout", "429", "529", "500", "malformed", "schema_break")}
        if self._script:
            return self._script.popleft()
        for kind, rate in (("timeout", cfg.timeout_rate), ("429", cfg.error_rate_429), ("529", cfg.error_rate_529),
                           ("500", cfg.error_rate_500), ("malformed", cfg.malformed_rate),
                           ("schema_break", cfg.schema_break_rate)):
            if draws[kind] < rate:
                return kind
        return "ok"

    def _window_headers(self, now: float, extra_tokens: int) -> tuple[dict[str, str], float | None]:
        """anthropic-ratelimit-* headers, and seconds to wait if a limit is hit now."""
        cfg = self.config
        while self._window and self._window[0][0] <= now - 60:
            self._window.popleft()
        headers: dict[str, str] = {}
        wait: float | None = None
        oldest = self._window[0][0] if self._window else now
        reset_in = max(0.0, oldest + 60 - now)
        if cfg.rpm:
            used = len(self._window)
            headers.update({"anthropic-ratelimit-requests-limit": str(cfg.rpm),
                            "anthropic-ratelimit-requests-remaining": str(max(0, cfg.rpm - used - 1)),
                            "anthropic-ratelimit-requests-reset": _now_iso(reset_in)})
            if used >= cfg.rpm:
                wait = reset_in
        if cfg.tpm:
            used_t = sum(t for _, t in self._window)
            headers.update({"anthropic-ratelimit-tokens-limit": str(cfg.tpm),
                            "anthropic-ratelimit-tokens-remaining": str(max(0, cfg.tpm - used_t - extra_tokens)),
                            "anthropic-ratelimit-tokens-reset": _now_iso(reset_in)})
            if used_t + extra_tokens > cfg.tpm and self._window:
                # Wait until enough of the window has expired to fit this request.
                # (A request bigger than the whole budget is admitted into an empty window.)
                need, acc = used_t + extra_tokens - cfg.tpm, 0
                until = self._window[-1][0] + 60 - now
                for t0, tok in self._window:
                    acc += tok
                    if acc >= need:
                        until = t0 + 60 - now
                        break
                wait = max(wait or 0.0, until)
        return headers, wait

    async def _answer(self, route: str, model: str, req: dict[str, Any], reader: asyncio.StreamReader) -> Any:
        cfg = self.config
        now = time.monotonic()
        est = estimate_tokens({k: req.get(k) for k in ("system", "messages", "tools")})
        rl_headers, wait = self._window_headers(now, est)
        if wait is not None:
            self._stats["window_limited"] += 1
            self._stats["outcomes"]["429"] += 1
            raise _ApiError(429, "rate_limit_error", "Number of requests or tokens has exceeded your per-minute "
                            "rate limit", {**rl_headers, "retry-after": _fmt_seconds(wait)})
        outcome = self._next_outcome()
        self._stats["outcomes"][outcome] += 1
        if outcome == "timeout":
            await _hold(reader, cfg.hang_s)
            return _HANG
        if outcome == "429":
            raise _ApiError(429, "rate_limit_error", "This request would exceed your organization's rate limit.",
                            {**rl_headers, "retry-after": _fmt_seconds(cfg.retry_after)})
        if outcome == "529":
            extra = {"retry-after": _fmt_seconds(cfg.overloaded_retry_after)} if cfg.overloaded_retry_after \
                is not None else {}
            raise _ApiError(529, "overloaded_error", "Overloaded", extra)
        if outcome == "500":
            raise _ApiError(500, "api_error", "Internal server error")

        message = self._synthesise(route, model, req, outcome)
        if cfg.latency > 0:
            await asyncio.sleep(cfg.latency)
        usage = message["usage"]
        self._window.append((time.monotonic(), usage["input_tokens"] + usage["output_tokens"]
                             + usage["cache_creation_input_tokens"] + usage["cache_read_input_tokens"]))
        self._count_usage(model, usage)
        headers = dict(rl_headers)
        headers["request-id"] = self._next_id("req_fake")
        if route == "bedrock":
            headers["x-amzn-bedrock-input-token-count"] = str(usage["input_tokens"])
            headers["x-amzn-bedrock-output-token-count"] = str(usage["output_tokens"])
        return 200, headers, _dumps(message), "application/json"

    # ------------------------------------------------------------------ answers

    def _next_id(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}_{hashlib.sha256(f'{self.config.seed}:{self._seq}'.encode()).hexdigest()[:24]}"

    def _usage_in(self, model: str, req: dict[str, Any]) -> dict[str, int]:
        """Input tokens, split into cache writes/reads when a system block carries cache_control."""
        total = estimate_tokens({k: req.get(k) for k in ("system", "messages", "tools")})
        usage = {"input_tokens": total, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
        system = req.get("system")
        if not isinstance(system, list):
            return usage
        marked = [i for i, b in enumerate(system) if isinstance(b, dict) and b.get("cache_control")]
        if not marked:
            return usage
        # The cached prefix is tools + system up to the last marked block (the API's order).
        prefix = {"tools": req.get("tools"), "system": system[: marked[-1] + 1]}
        prefix_tokens = min(total, estimate_tokens(prefix))
        if prefix_tokens < self.config.min_cache_tokens:
            return usage
        key = hashlib.sha256(f"{model}\x1f{_canon(prefix)}".encode()).hexdigest()
        now = time.monotonic()
        expiry = self._prompt_cache.get(key)
        if expiry is not None and expiry > now:
            usage["cache_read_input_tokens"] = prefix_tokens
        else:
            usage["cache_creation_input_tokens"] = prefix_tokens
        self._prompt_cache[key] = now + self.config.cache_ttl_s  # a hit refreshes the TTL
        usage["input_tokens"] = max(0, total - prefix_tokens)
        return usage

    def _synthesise(self, route: str, model: str, req: dict[str, Any], outcome: str) -> dict[str, Any]:
        seed_key = hashlib.sha256(_canon(req).encode()).hexdigest()
        words = _words_of(req)
        tools = req.get("tools") or []
        choice = req.get("tool_choice") or {}
        tool = None
        if choice.get("type") == "tool":
            tool = next((t for t in tools if t.get("name") == choice.get("name")), None)
        elif choice.get("type") == "any" and tools:
            tool = tools[0]
        content: list[dict[str, Any]]
        if tool is not None and outcome != "malformed":
            schema = tool.get("input_schema") or {"type": "object"}
            value = synthesise(schema, seed_key, words)
            if outcome == "schema_break":
                value = break_value(value, schema)
            content = [{"type": "tool_use", "id": self._next_id("toolu"), "name": tool["name"], "input": value}]
            stop = "tool_use"
        else:
            text = _text_answer(seed_key, words, tool["name"] if tool else None)
            content = [{"type": "text", "text": text}]
            stop = "end_turn"
        out_tokens = estimate_tokens(content)
        max_tokens = int(req["max_tokens"])
        if outcome == "truncated" or out_tokens > max_tokens:
            # Cut off mid-answer, as the API does: a tool call's input arrives incomplete.
            stop = "max_tokens"
            out_tokens = min(out_tokens, max_tokens)
            if content[0]["type"] == "tool_use":
                content[0]["input"] = {}
            else:
                content[0]["text"] = content[0]["text"][: max_tokens * 4]
        usage = self._usage_in(model, req)
        usage["output_tokens"] = out_tokens
        return {
            "id": self._next_id("msg_bdrk" if route == "bedrock" else "msg"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }

    # ------------------------------------------------------------------ batches
    #
    # As the API: the top-level body is checked at once (400), each request's
    # params only while it is processed (an "errored" result). Results are
    # produced at creation, but usage counts once the batch reports "ended"
    # (a batch canceled before that returned no usage), and the results file
    # lists them in `batch_results_order` ("shuffled" by default: the API
    # promises no order, custom_id is the only key).

    def _create_batch(self, body: dict[str, Any]) -> dict[str, Any]:
        reqs = body.get("requests")
        if not isinstance(reqs, list) or not reqs:
            raise _ApiError(400, "invalid_request_error", "requests: at least one request is required")
        seen: set[str] = set()
        for i, item in enumerate(reqs):
            custom_id = item.get("custom_id") if isinstance(item, dict) else None
            if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= 64:
                raise _ApiError(400, "invalid_request_error", f"requests.{i}.custom_id: 1 to 64 characters required")
            if custom_id in seen:
                raise _ApiError(400, "invalid_request_error",
                                f"requests.{i}.custom_id: {custom_id!r} is not unique within the batch")
            seen.add(custom_id)
        results = []
        for item in reqs:
            custom_id, params = item["custom_id"], item.get("params") or {}
            scripted = self._batch_script.popleft() if self._batch_script else "ok"
            if scripted in ("expired", "canceled"):
                results.append({"custom_id": custom_id, "result": {"type": scripted}})
                continue
            try:
                if scripted == "errored":
                    raise _ApiError(400, "invalid_request_error", "params: rejected by the scripted batch outcome")
                model = self._check_request("messages", None, params)
                outcome = self._next_outcome()
                if outcome in ("429", "529", "500", "timeout"):
                    raise _ApiError(500, "api_error", "Internal server error")
                message = self._synthesise("messages", model, params, outcome)
                results.append({"custom_id": custom_id, "result": {"type": "succeeded", "message": message}})
            except _ApiError as err:
                results.append({"custom_id": custom_id, "result": {
                    "type": "errored", "error": {"type": "error", "error": {"type": err.etype, "message": err.message}}}})
        self._stats["batches"] += 1
        self._stats["by_route"]["batches"] += len(reqs)
        batch_id = self._next_id("msgbatch")
        created = datetime.now(timezone.utc)
        self._batches[batch_id] = {"results": results, "polls": 0, "created_at": created, "ended_at": None,
                                   "cancel_initiated_at": None, "end_at_poll": None}
        return self._batch_object(batch_id)

    def _batch_object(self, batch_id: str) -> dict[str, Any]:
        b = self._batches[batch_id]
        ended = b["ended_at"] is not None
        end_at = b["end_at_poll"] if b["end_at_poll"] is not None else self.config.batch_polls
        if not ended and b["polls"] >= end_at:
            b["ended_at"] = datetime.now(timezone.utc)
            ended = True
            for r in b["results"]:
                if r["result"]["type"] == "succeeded":
                    self._count_usage(r["result"]["message"]["model"], r["result"]["message"]["usage"])
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if ended:
            for r in b["results"]:
                counts[r["result"]["type"]] += 1
        else:
            counts["processing"] = len(b["results"])
        status = "ended" if ended else ("canceling" if b["cancel_initiated_at"] else "in_progress")
        return {
            "id": batch_id, "type": "message_batch", "processing_status": status,
            "request_counts": counts, "ended_at": _iso(b["ended_at"]), "created_at": _iso(b["created_at"]),
            "expires_at": _iso(b["created_at"] + timedelta(hours=24)), "archived_at": None,
            "cancel_initiated_at": _iso(b["cancel_initiated_at"]),
            "results_url": f"{self.url}/v1/messages/batches/{batch_id}/results" if ended else None,
        }

    def _get_batch(self, batch_id: str, results: bool) -> tuple[int, dict[str, str], bytes, str]:
        b = self._batches.get(batch_id)
        if b is None:
            raise _ApiError(404, "not_found_error", f"batch {batch_id} not found")
        if results:
            if b["ended_at"] is None:
                raise _ApiError(400, "invalid_request_error", "batch has not ended yet")
            rows = list(b["results"])
            order = self.config.batch_results_order
            if order == "reversed":
                rows.reverse()
            elif order == "shuffled":
                random.Random(f"{self.config.seed}:{batch_id}").shuffle(rows)
            lines = b"".join(_dumps(r) + b"\n" for r in rows)
            return 200, {}, lines, "application/binary"
        b["polls"] += 1
        return 200, {}, _dumps(self._batch_object(batch_id)), "application/json"

    def _cancel_batch(self, batch_id: str) -> dict[str, Any]:
        b = self._batches.get(batch_id)
        if b is None:
            raise _ApiError(404, "not_found_error", f"batch {batch_id} not found")
        if b["ended_at"] is None and b["cancel_initiated_at"] is None:
            # Nothing here was really processed yet: every request ends canceled
            # (the API would finish the few requests already running).
            b["cancel_initiated_at"] = datetime.now(timezone.utc)
            b["end_at_poll"] = b["polls"] + 1  # "canceling" now, "ended" at the next GET
            for r in b["results"]:
                r["result"] = {"type": "canceled"}
        return self._batch_object(batch_id)


# ---------------------------------------------------------------------- synthesis helpers

_WORD_RE = re.compile(r"[A-Za-zÀ-ÿ][A-Za-zÀ-ÿ'-]{2,}")
_FALLBACK_WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]


def _words_of(req: dict[str, Any]) -> list[str]:
    """Words of the last user turn, so answers look related to what was asked."""
    for msg in reversed(req.get("messages") or []):
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            text = content
        else:
            text = " ".join(str(b.get("text") or b.get("content") or "") for b in content or []
                            if isinstance(b, dict))
        words = _WORD_RE.findall(text)
        if words:
            return words[:2000]
    return list(_FALLBACK_WORDS)


def _h(*parts: str) -> int:
    return int(hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12], 16)


def synthesise(schema: dict[str, Any], key: str, words: list[str], path: str = "$", depth: int = 0) -> Any:
    """A value that validates against ``schema``, derived deterministically from ``key`` and ``path``."""
    h = _h(key, path)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        # Only the values the schema allows, spread by the key: a facts answer
        # names the chunk refs of its own request, and not always the first.
        return schema["enum"][h % len(schema["enum"])]
    for alt in ("anyOf", "oneOf"):
        if schema.get(alt):
            return synthesise(schema[alt][0], key, words, path, depth + 1)
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), "null")
    if t is None:
        t = "object" if "properties" in schema else "string"
    if t == "object":
        if depth > 8:
            return {}
        props = schema.get("properties") or {}
        return {k: synthesise(v, key, words, f"{path}.{k}", depth + 1) for k, v in props.items()}
    if t == "array":
        lo = int(schema.get("minItems", 1 if depth <= 8 else 0))
        hi = int(schema.get("maxItems", max(lo, 3)))
        n = max(lo, min(hi, 1 + h % 3))
        items = schema.get("items") or {"type": "string"}
        return [synthesise(items, key, words, f"{path}[{i}]", depth + 1) for i in range(n)]
    if t == "string":
        fmt = schema.get("format")
        if fmt == "date":
            return f"20{20 + h % 6}-{1 + h % 12:02d}-{1 + h % 28:02d}"
        if fmt == "date-time":
            return f"20{20 + h % 6}-{1 + h % 12:02d}-{1 + h % 28:02d}T{h % 24:02d}:00:00Z"
        n = 2 + h % 3
        s = " ".join(words[(h + i * 7919) % len(words)] for i in range(n))
        lo, hi = int(schema.get("minLength", 0)), schema.get("maxLength")
        if len(s) < lo:
            s = (s + " " + s) * (lo // max(1, len(s)) + 1)
        if hi is not None:
            s = s[: int(hi)]
        return s[: max(lo, len(s))]
    if t == "integer":
        lo = int(schema.get("minimum", 0))
        hi = int(schema.get("maximum", lo + 100))
        return lo + h % (hi - lo + 1)
    if t == "number":
        lo = float(schema.get("minimum", 0))
        hi = float(schema.get("maximum", lo + 100))
        return round(lo + (h % 10_000) / 10_000 * (hi - lo), 3)
    if t == "boolean":
        return h % 2 == 0
    return None


def break_value(value: Any, schema: dict[str, Any]) -> Any:
    """Make a valid tool input invalid the way models do: drop a required field, else mistype one."""
    if isinstance(value, dict):
        broken = dict(value)
        required = list(schema.get("required") or [])
        if required:
            broken.pop(required[0], None)
            return broken
        props = schema.get("properties") or {}
        for k, sub in props.items():
            broken[k] = 12345 if sub.get("type") != "integer" else "not a number"
            return broken
    return {"unexpected": "shape"}


def _text_answer(key: str, words: list[str], tool_name: str | None) -> str:
    h = _h(key, "text")
    picked = " ".join(words[(h + i * 7919) % len(words)] for i in range(6))
    if tool_name:
        return f"I would rather answer in prose than call {tool_name}: {picked}."
    return f"Fake answer about {picked}."


def _check_tool_results(msgs: list[dict[str, Any]]) -> None:
    """Like the API: each tool_use must be answered by a tool_result in the next user turn."""
    for i, msg in enumerate(msgs):
        if msg.get("role") != "assistant" or not isinstance(msg.get("content"), list):
            continue
        ids = [b.get("id") for b in msg["content"] if isinstance(b, dict) and b.get("type") == "tool_use"]
        if not ids:
            continue
        nxt = msgs[i + 1] if i + 1 < len(msgs) else None
        got = set()
        if nxt and isinstance(nxt.get("content"), list):
            got = {b.get("tool_use_id") for b in nxt["content"] if isinstance(b, dict) and b.get("type") == "tool_result"}
        missing = [x for x in ids if x not in got]
        if missing:
            raise _ApiError(400, "invalid_request_error",
                            f"messages.{i + 1}: tool_use ids were found without tool_result blocks: {missing}")


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return "0"
    return str(int(s)) if float(s).is_integer() else f"{s:.3f}".rstrip("0")


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"null")
    except ValueError:
        raise _ApiError(400, "invalid_request_error", "request body is not valid JSON")
    if not isinstance(data, dict):
        raise _ApiError(400, "invalid_request_error", "request body must be a JSON object")
    return data


async def _hold(reader: asyncio.StreamReader, seconds: float) -> None:
    """Keep a request unanswered for ``seconds`` or until the client hangs up."""
    sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
    eof = asyncio.ensure_future(reader.read(1))  # b"" once the client closes
    try:
        await asyncio.wait({sleeper, eof}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (sleeper, eof):
            t.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(sleeper, eof, return_exceptions=True)


# ---------------------------------------------------------------------- minimal HTTP/1.1


async def _read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                        ) -> tuple[str, str, dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None  # client closed between requests
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    else:
        body = await reader.readexactly(int(headers.get("content-length") or 0))
    return method, target, headers, body


def _write_response(writer: asyncio.StreamWriter, status: int, headers: dict[str, str], body: bytes,
                    ctype: str) -> None:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Overloaded" if status == 529 else "Unknown"
    out = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {ctype}", f"Content-Length: {len(body)}",
           "Connection: keep-alive"]
    out += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)


# ---------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python tests/support/fake_anthropic.py",
                                description="Fake Anthropic Messages API (and Bedrock InvokeModel) on loopback.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    d = FakeConfig()
    for f in fields(FakeConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool",) or isinstance(getattr(d, f.name), bool):
            p.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=getattr(d, f.name))
        elif f.name == "overloaded_retry_after":
            p.add_argument(flag, type=float, default=None)
        else:
            p.add_argument(flag, type=type(getattr(d, f.name)), default=getattr(d, f.name))
    return p


async def _main(argv: list[str] | None = None) -> None:
    args = vars(_parser().parse_args(argv))
    host, port = args.pop("host"), args.pop("port")
    srv = FakeAnthropicServer(host, port, **args)
    await srv.start()
    print(f"listening {srv.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await srv.stop()


def main(argv: list[str] | None = None) -> None:
    try:
        asyncio.run(_main(argv))
    except KeyboardInterrupt:  # pragma: no cover
        pass
    sys.stdout.flush()


if __name__ == "__main__":
    main()
